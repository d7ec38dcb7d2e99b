"""What the policy check adds to a plan, at 10 / 100 / 1,000 generated domains (goal: under 10%
of Terraform's own plan time).

For each size, on the same rendered files and an initialized working directory: Terraform's plan
(`plan` and `show -json`) alone; then the plan as the stage runs it, with Checkov asked at its
start (a fresh scan: no cached result) and the Rego rules evaluated after it over the config and
the plan's JSON. "added" is the difference, median of --repeat runs; the Rego rules and Checkov's
scan are also timed alone. Checkov's server is started (and timed) once before.

    python bench/policy.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from table import Table  # noqa: E402
from validate import generate  # noqa: E402

from atl_pipeline import policy  # noqa: E402
from atl_pipeline.config import load_config  # noqa: E402
from atl_pipeline.policy.checkov import ARGUMENTS, Scan, ask  # noqa: E402
from atl_pipeline.project import Project  # noqa: E402
from atl_pipeline.terraform.render import render, write  # noqa: E402
from atl_pipeline.terraform.stages import terraform  # noqa: E402

SIZES = (10, 100, 1_000)
TEMPLATES = Path(__file__).resolve().parent.parent / "terraform_templates"


def timed(work) -> tuple[float, object]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def measure(size: int, root: Path, repeat: int) -> list[str]:
    project = Project(root)
    project.domains_file.write_text(generate(size))
    loaded = load_config(project.domains_file)
    rendered = render(loaded.config, TEMPLATES)
    runner = terraform(project, loaded.config.state, loaded.config.environment)
    write(rendered, runner.workdir)
    runner.init()
    plan_file = runner.workdir / "bench.tfplan"

    def plan() -> dict:
        runner.plan(plan_file)
        return runner.show(plan_file)

    def scan(run: int) -> Scan:
        folder = root / f"scan-{run}"
        shutil.rmtree(folder, ignore_errors=True)
        return Scan(rendered.files, folder)

    alone, staged, rules, checkov = [], [], [], []
    for run in range(repeat):
        seconds, shown = timed(plan)
        alone.append(seconds)
        staged.append(timed(lambda run=run: policy.check(loaded, root / "policies", scan(run), plan()))[0])
        rules.append(timed(lambda shown=shown: policy.rule_findings(loaded, root / "policies", shown))[0])
        checkov.append(timed(lambda run=run: scan(run + repeat).result())[0])
    plan_s, with_s = statistics.median(alone), statistics.median(staged)
    return [f"{size:,}", f"{plan_s:.2f}", f"{with_s:.2f}", f"{with_s - plan_s:+.2f}",
            f"{(with_s - plan_s) / plan_s:+.1%}", f"{statistics.median(rules):.3f}",
            f"{statistics.median(checkov):.2f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--markdown", action="store_true", help="a Markdown table, for the docs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp)
        started, _ = timed(lambda: ask(["--directory", str(empty), *ARGUMENTS]))
    print(f"Checkov's server: first answer after {started:.1f} s (its start, when none serves)")
    table = Table({"domains": 7, "plan s": 6, "plan+policy s": 6, "added s": 6, "added": 7, "rules s": 6,
                   "checkov s": 6}, args.markdown)
    for size in SIZES:
        with tempfile.TemporaryDirectory() as tmp:
            table.row(*measure(size, Path(tmp), args.repeat))


if __name__ == "__main__":
    main()
