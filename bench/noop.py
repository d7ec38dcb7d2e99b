"""The run in which nothing changes, stage by stage, as the daemon runs it.

The example project under a real `dg dev` (webserver and daemon, the file sensor): after a
first deploy, domains.yml gets a comment N times; each edit is a run that changes nothing.
Prints the median of the runs' own durations and of each stage's, from the instance's records:
where a no-op run's seconds go, and what a change to the stages' plumbing (the IO manager,
say) costs them. bench/gitops.py times the same run from a git push, at 100 domains.

    python bench/noop.py [--runs 6] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dagster import DagsterInstance  # noqa: E402

from tests.conftest import copy_project, kill_stack  # noqa: E402
from tests.dagster_dev import DagsterDev  # noqa: E402

SETTLE = 8.0  # seconds between edits: the audit and automation sensors' ticks of the run before are over


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--runs", type=int, default=6)
    options.add_argument("--quick", action="store_true", help="two runs, for CI: the script still works")
    args = options.parse_args()
    runs = 2 if args.quick else args.runs
    root = Path(tempfile.mkdtemp(prefix="atl-bench-noop-"))
    project = copy_project(root / "project")
    dev = None
    try:
        dev = DagsterDev.start(project, root / "dagster-dev.log")
        time.sleep(2 * SETTLE)  # the file sensor's first run, of the file as copied, has started
        base = project.domains_file.read_text()
        edit(dev, project, base + "# the first deploy\n")
        instance = DagsterInstance.from_config(str(project.dagster_home))
        totals, stages = [], {}
        for number in range(runs):
            time.sleep(SETTLE)
            run_id = edit(dev, project, base + f"# no-op {number}\n")
            record = instance.get_run_record_by_id(run_id)
            totals.append(record.end_time - record.start_time)
            for step in instance.get_run_step_stats(run_id):
                stages.setdefault(step.step_key, []).append(step.end_time - step.start_time)
        print(f"the no-op run, median of {runs} (3 domains, the file sensor, dg dev)\n")
        print(f"{'stage':<22} {'s':>6}")
        for stage, seconds in stages.items():
            print(f"{stage:<22} {statistics.median(seconds):>6.3f}")
        print(f"{'the run':<22} {statistics.median(totals):>6.3f}")
    finally:
        if dev:
            dev.stop()
        kill_stack(project)
        shutil.rmtree(root, ignore_errors=True)


def edit(dev: DagsterDev, project, text: str) -> str:
    """Write domains.yml; the id of the file sensor's run for it, once it succeeded."""
    project.domains_file.write_text(text)
    run = dev.wait_for_run({"atl/sha256": hashlib.sha256(text.encode()).hexdigest()}, timeout=300)
    if run["status"] != "SUCCESS":
        raise SystemExit(f"run {run['runId']} ended {run['status']}: see {dev.log}")
    return run["runId"]


if __name__ == "__main__":
    main()
