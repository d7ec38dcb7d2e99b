"""What the policy check adds to a plan, at 10 / 100 / 1,000 generated domains (goal: under 10%
of Terraform's own plan time).

For each size, the `terraform_plan` stage's work (`make_plan`: render, read-back check, `terraform
init`, `plan`, `show -json`) over an empty state, as it runs, and again with the policy check taken
out (this script replaces it with an empty report; nothing else does). Checkov's scan of the
rendered files starts before `terraform init` and overlaps it; the Rego rules run after the plan.
Also timed alone: the rules (over the config and that plan), and a fresh Checkov scan (no cached
result). Medians of --repeat
runs; Checkov's server is started (and timed) once before.

    python bench/policy.py [--repeat 3] [--markdown]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))

from table import Table  # noqa: E402
from validate import generate  # noqa: E402

from atl_pipeline import policy  # noqa: E402
from atl_pipeline.config import load_config  # noqa: E402
from atl_pipeline.policy import PolicyReport  # noqa: E402
from atl_pipeline.policy.checkov import ARGUMENTS, Scan, ask  # noqa: E402
from atl_pipeline.project import Project  # noqa: E402
from atl_pipeline.terraform import stages  # noqa: E402
from atl_pipeline.terraform.render import render  # noqa: E402
from atl_pipeline.validation import validate  # noqa: E402

SIZES = (10, 100, 1_000)
TEMPLATES = Path(__file__).resolve().parent.parent / "terraform_templates"


class _NoScan:
    def __init__(self, files, folder):
        pass


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def measure(size: int, root: Path, repeat: int) -> list[str]:
    project = Project(root)
    project.templates_dir.symlink_to(TEMPLATES)
    project.domains_file.write_text(generate(size))
    validated = validate(load_config(project.domains_file))
    stages.make_plan(project, validated, "warm-up")  # providers and modules installed once, as on a running machine
    without, staged, rules, checkov = [], [], [], []
    for run in range(repeat):
        with mock.patch.object(stages, "Scan", _NoScan), \
                mock.patch.object(stages.policy, "check", lambda *args: PolicyReport((), (), "")):
            without.append(timed(lambda run=run: stages.make_plan(project, validated, f"alone-{run}")))
        (project.state_dir / "terraform" / "production" / "policy" / "checkov.json").unlink(missing_ok=True)
        start = time.perf_counter()
        plan = stages.make_plan(project, validated, f"checked-{run}")
        staged.append(time.perf_counter() - start)
        shown = stages.terraform(project, plan.state, plan.environment).show(plan.plan_file)
        rules.append(timed(lambda shown=shown: policy.rule_findings(validated.loaded, root / "policies", shown)))
        files = render(validated.loaded.config, TEMPLATES).files
        checkov.append(timed(lambda run=run, files=files: Scan(files, root / f"scan-{run}").result()))
    plan_s, with_s = statistics.median(without), statistics.median(staged)
    return [f"{size:,}", f"{plan_s:.2f}", f"{with_s:.2f}", f"{with_s - plan_s:+.2f}",
            f"{(with_s - plan_s) / plan_s:+.1%}", f"{statistics.median(rules):.3f}",
            f"{statistics.median(checkov):.2f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--markdown", action="store_true", help="a Markdown table, for the docs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = timed(lambda: ask(["--directory", tmp, *ARGUMENTS]))
    print(f"Checkov's server: first answer after {started:.1f} s (its start, when none serves)")
    table = Table({"domains": 7, "stage s": 6, "with policy s": 6, "added s": 6, "added": 7, "rules s": 6,
                   "checkov s": 6}, args.markdown)
    for size in SIZES:
        with tempfile.TemporaryDirectory() as tmp:
            table.row(*measure(size, Path(tmp), args.repeat))


if __name__ == "__main__":
    main()
