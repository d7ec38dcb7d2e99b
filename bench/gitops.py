"""From git push to a healthy stack, through the real sensor, daemon and run worker.

A 100-domain project in a bare repository, watched by `dg dev` (webserver and daemon
on loopback). Three kinds of push, each repeated; for each, the seconds from `git push`
returning to the run starting and to every stage green, and the run's own duration:

- one domain added (a Terraform change, a new certificate, a Caddy load);
- one domain's monitoring switched (a Terraform change, a Prometheus reload);
- a comment edited: a run in which nothing changes (the no-op run).

The same no-op run from the terminal (`atl infra up`, in-process) is timed as well.

With `--via hook` (the default) the bare repository's post-receive hook (`atl utils git-hook
install`) tells a push receiver at once, and the sensor polls once a minute; with `--via poll`
the sensor finds each push at its next poll, every 5 s.

    python bench/gitops.py [--domains 100] [--repeat 3] [--via hook|poll]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from atl_pipeline import githook  # noqa: E402
from atl_pipeline.orchestration.receiver import PATH, Receiver  # noqa: E402
from atl_pipeline.project import Project  # noqa: E402
from atl_pipeline.runtime.local import deployed_runtime  # noqa: E402
from tests.conftest import copy_project  # noqa: E402
from tests.dagster_dev import DagsterDev  # noqa: E402
from tests.git_helpers import Remote  # noqa: E402

SECRET = "bench-secret"
DOMAIN = """\
  - name: "{name}"
    service: "{service}"
    ssl: true
    monitoring: {monitoring}
    replicas: 2
    resources:
      cpu: "100m"
      memory: "128Mi"
"""


def with_domains(project: Project, count: int) -> None:
    """The example's services, serving `count` domains."""
    text = project.domains_file.read_text()
    head = text[:text.index("domains:")]
    domains = "".join(DOMAIN.format(name=f"site{i}.bench.allthingslinux.org", service=("backend-api", "website")[i % 2],
                                    monitoring="true") for i in range(count))
    project.domains_file.write_text(f"{head}domains:\n{domains}")


def push_and_time(dev: DagsterDev, remote: Remote, edit) -> tuple[float, float, float]:
    """Seconds from the push to the run's start, to its success, and the run's duration."""
    text = remote.clone.joinpath("domains.yml").read_text()
    remote.clone.joinpath("domains.yml").write_text(edit(text))
    pushed = time.time()  # the hook runs inside `git push`: the clock starts before it
    sha = remote.commit("bench", "domains.yml")
    run = dev.wait_for_run({"atl/commit": sha}, timeout=300)
    if run["status"] != "SUCCESS":
        raise SystemExit(f"run {run['runId']} for {sha[:12]}: {run['status']}: {dev.failures(run['runId'])}")
    return run["startTime"] - pushed, run["endTime"] - pushed, run["endTime"] - run["startTime"]


def main() -> None:
    options = argparse.ArgumentParser()
    options.add_argument("--domains", type=int, default=100)
    options.add_argument("--repeat", type=int, default=3)
    options.add_argument("--via", choices=["hook", "poll"], default="hook")
    args = options.parse_args()

    temporary = Path(tempfile.mkdtemp(prefix="atl-bench-"))
    project = copy_project(temporary / "project")
    with_domains(project, args.domains)
    remote = Remote.create(temporary, project.root)
    poll = "60" if args.via == "hook" else "5"
    dev = DagsterDev.start(project, temporary / "dagster-dev.log", ATL_GIT_REMOTE=str(remote.origin),
                           ATL_GIT_BRANCH="main", ATL_GIT_POLL_SECONDS=poll)
    receiver = Receiver(("127.0.0.1", 0), dev.url, SECRET)
    receiver.serve_in_background()
    if args.via == "hook":
        githook.install(remote.origin, f"http://127.0.0.1:{receiver.server_address[1]}{PATH}", SECRET)
    counter = iter(range(10**6))
    changes = {
        "one domain added": lambda text: text + DOMAIN.format(
            name=f"new{next(counter)}.bench.allthingslinux.org", service="website", monitoring="true"),
        "one domain's monitoring switched": lambda text: text.replace(
            "monitoring: true", "monitoring: false", 1) if "monitoring: false" not in text
        else text.replace("monitoring: false", "monitoring: true", 1),
        "no-op (a comment edited)": lambda text: text + f"# bench {next(counter)}\n",
    }
    succeeded = False
    try:
        first = dev.wait_for_run({"atl/commit": remote.git("rev-parse", "HEAD").strip()}, timeout=300)
        print(f"{args.domains} domains, first deploy: {first['status']} in "
              f"{first['endTime'] - first['startTime']:.1f} s (run); pushes via {args.via} (the sensor polls every "
              f"{poll} s), median of {args.repeat} below\n")
        print(f"{'push':<34} {'push->started s':>15} {'push->green s':>13} {'run s':>6}")
        for name, edit in changes.items():
            timings = [push_and_time(dev, remote, edit) for _ in range(args.repeat)]
            started, green, run = (statistics.median(column) for column in zip(*timings, strict=True))
            print(f"{name:<34} {started:>15.1f} {green:>13.1f} {run:>6.1f}")
        print(f"{'no-op, `atl infra up` (terminal)':<34} {'-':>15} {cli_noop(project):>13.1f} {'-':>6}")
        succeeded = True
    finally:
        receiver.shutdown()
        dev.stop()
        deployed_runtime(project).stop()
        if succeeded:
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            print(f"kept for a post-mortem: {temporary}")


def cli_noop(project: Project) -> float:
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "atl"), "infra", "up"], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "ATL_PROJECT_DIR": str(project.root)})
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
