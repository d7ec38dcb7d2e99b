"""Render, check, plan and apply generated configurations of 10 / 100 / 1,000 domains.

Prints our own time (rendering the templates, reading them back with python-hcl2 and
checking the structure) apart from Terraform's (init, plan, show, apply), from an empty
state, and a second plan of the same configuration (no changes).

    python bench/plan.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from validate import generate  # noqa: E402

from atl_pipeline.config import load_config  # noqa: E402
from atl_pipeline.project import Project  # noqa: E402
from atl_pipeline.terraform.hcl_check import check_rendered  # noqa: E402
from atl_pipeline.terraform.plan import PlanSummary  # noqa: E402
from atl_pipeline.terraform.render import render, write  # noqa: E402
from atl_pipeline.terraform.stages import terraform  # noqa: E402

SIZES = (10, 100, 1_000)
TEMPLATES = Path(__file__).resolve().parent.parent / "terraform_templates"


def timed(work):
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def measure(size: int, root: Path) -> str:
    project = Project(root)
    project.domains_file.write_text(generate(size))
    config = load_config(project.domains_file).config
    render_s, rendered = timed(lambda: render(config, TEMPLATES))
    check_s, _ = timed(lambda: check_rendered(rendered))
    runner = terraform(project, config.state, config.environment)
    write(rendered, runner.workdir)
    init_s, _ = timed(runner.init)
    plan_file = runner.workdir / "bench.tfplan"
    plan_s, _ = timed(lambda: (runner.plan(plan_file), runner.show(plan_file)))
    apply_s, _ = timed(lambda: runner.apply(plan_file))
    replan_s, _ = timed(lambda: runner.plan(plan_file))
    assert PlanSummary.from_show_json(runner.show(plan_file)).changes == ()
    ours, theirs = render_s + check_s, init_s + plan_s + apply_s
    return (f"{size:>8,} {render_s:>9.3f} {check_s:>8.3f} {ours:>7.3f} {init_s:>7.3f} {plan_s:>7.3f} "
            f"{apply_s:>8.3f} {theirs:>7.3f} {ours / theirs:>8.2f} {replan_s:>9.3f}")


def main() -> None:
    print(f"{'domains':>8} {'render s':>9} {'check s':>8} {'ours s':>7} {'init s':>7} {'plan s':>7} "
          f"{'apply s':>8} {'tf s':>7} {'ours/tf':>8} {'replan s':>9}")
    for size in SIZES:
        with tempfile.TemporaryDirectory() as tmp:
            print(measure(size, Path(tmp)))


if __name__ == "__main__":
    main()
