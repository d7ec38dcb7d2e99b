"""Terraform's plan and apply at scale on the local target: 1,000 domains by default.

Generates a project of N domains over 50 services (the generator of bench/validate.py)
and runs the pipeline's own Terraform stages (`make_plan`, `apply_plan`) for three changes,
one after the other on the same state:

- from scratch: every resource created;
- one domain's monitoring switched off: that domain updated in place (domains that share
  a service must ask for the same resources, so a change of one domain's memory is not valid);
- every domain's memory changed: every domain and every service updated in place.

For each it prints the plan's changes, the seconds of `make_plan` (render, check, init,
plan, show) and of `apply_plan` (apply, then read the outputs and the state's serial),
and the size of the state file after apply. Applying writes the whole state once per
resource with the local backend, so the apply of a change to every domain grows with
the number of resources times the size of the state.

With `--before REF` the same three changes are run first with the local target's
templates of that git revision, then with the working tree's, and the table gains the
ratio before/after of each figure.

    python bench/scale.py [--domains 1000] [--before REF] [--backend local|pg] [--parallelism N]

`--backend pg` keeps the state in a throwaway PostgreSQL server on loopback (Terraform's pg
backend, as `state: {backend: pg}` configures it), which writes the state at the end of the
apply (and every 20 s during it) rather than after each resource.

`--parallelism N` passes `-parallelism=N` to every plan and apply (Terraform's default is 10).
At 1,000 domains one run takes a few minutes; `--before` with the old templates, longer.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from table import Table  # noqa: E402
from validate import generate  # noqa: E402

from atl_pipeline.config import load_config  # noqa: E402
from atl_pipeline.project import Project  # noqa: E402
from atl_pipeline.terraform import stages  # noqa: E402
from atl_pipeline.validation import validate  # noqa: E402
from tests.postgres import PostgresServer  # noqa: E402

TEMPLATES = REPO / "terraform_templates"
MEMORY = "memory: 512Mi"
TIMEOUT = 3600.0  # the pipeline's 600 s per command is less than the old templates' apply at 1,000 domains
_terraform = stages.terraform
stages.terraform = lambda *args, **kwargs: dataclasses.replace(_terraform(*args, **kwargs), timeout=TIMEOUT)


PG_STATE = "state: {{backend: pg, conn_str: 'env:ATL_BENCH_STATE_PG', schema_name: {schema}}}\n"


def changes(domains: int, backend: str, schema: str) -> dict[str, str]:
    """Each step's domains.yml: from scratch, one domain's monitoring switched off, every domain's memory changed."""
    state = PG_STATE.format(schema=schema) if backend == "pg" else ""
    text = generate(domains).replace("services:\n", state + "services:\n", 1)
    return {
        "from scratch": text,
        "one domain": text.replace("monitoring: true", "monitoring: false", 1),
        "all domains": text.replace(MEMORY, "memory: 768Mi"),
    }


def run(domains: int, templates: Path, root: Path, backend: str) -> dict[str, tuple[str, float, float, int]]:
    """Per step: the plan's counts, plan seconds, apply seconds and state bytes."""
    project = Project(root)
    shutil.copytree(templates, project.templates_dir)
    figures = {}
    for step, text in changes(domains, backend, f"bench_{root.name}").items():
        project.domains_file.write_text(text)
        validated = validate(load_config(project.domains_file))
        start = time.perf_counter()
        plan = stages.make_plan(project, validated, step.replace(" ", "-"))
        planned = time.perf_counter()
        stages.apply_plan(project, plan)
        applied = time.perf_counter()
        counts = ", ".join(f"{n} {action}" for action, n in plan.summary.counts.items() if n)
        figures[step] = (counts, planned - start, applied - planned, state_bytes(plan.workdir, backend))
    return figures


def state_bytes(workdir: Path, backend: str) -> int:
    """The size of the state as Terraform serializes it (`terraform state pull`, whichever the backend)."""
    env = {**os.environ, "PG_CONN_STR": os.environ["ATL_BENCH_STATE_PG"]} if backend == "pg" else None
    return len(subprocess.run(["terraform", "state", "pull"], cwd=workdir, env=env, check=True,
                              capture_output=True).stdout)


def old_templates(ref: str, into: Path) -> Path:
    """The templates folder of a git revision, extracted into `into`."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "terraform_templates"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "terraform_templates"


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--domains", type=int, default=1_000)
    options.add_argument("--before", metavar="REF", help="also run the templates of this git revision, first")
    options.add_argument("--backend", choices=["local", "pg"], default="local", help="where Terraform keeps its state")
    options.add_argument("--parallelism", type=int, help="Terraform's -parallelism for plan and apply")
    options.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = options.parse_args()
    if args.parallelism:
        for command in ("plan", "apply"):
            os.environ[f"TF_CLI_ARGS_{command}"] = f"-parallelism={args.parallelism}"

    postgres = PostgresServer().start() if args.backend == "pg" else None
    if postgres:
        os.environ["ATL_BENCH_STATE_PG"] = postgres.url
    try:
        with tempfile.TemporaryDirectory(prefix="atl-bench-") as tmp:
            before = None
            if args.before:
                before = run(args.domains, old_templates(args.before, Path(tmp)), Path(tmp) / "before", args.backend)
            after = run(args.domains, TEMPLATES, Path(tmp) / "after", args.backend)
    finally:
        if postgres:
            postgres.stop()

    print(f"\n{args.domains:,} domains, local target, {args.backend} state backend, "
          f"parallelism {args.parallelism or 'default (10)'}" + (f"; before: {args.before}" if before else ""))
    columns = {"step": 12, "changes": 18, "plan s": 7, "apply s": 8, "state KB": 8}
    if before:
        columns |= {"plan s before": 7, "apply s before": 8, "state KB before": 8,
                    "apply before/after": 6}
    table = Table(columns, markdown=args.markdown)
    for step, (counts, plan_s, apply_s, size) in after.items():
        cells = [step, counts, f"{plan_s:.1f}", f"{apply_s:.1f}", f"{size / 1000:,.0f}"]
        if before:
            _, plan_b, apply_b, size_b = before[step]
            cells += [f"{plan_b:.1f}", f"{apply_b:.1f}", f"{size_b / 1000:,.0f}", f"{apply_b / apply_s:.1f}"]
        table.row(*cells)


if __name__ == "__main__":
    main()
