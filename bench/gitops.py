"""From git push to a healthy stack, through the real sensor, daemon and run worker.

A project in a bare repository, watched by `dg dev` (webserver and daemon on loopback),
deployed with one domain; then pushes, each timed from `git push` to the run starting and
to every stage green, with the run's own duration:

- the first deploy: the file of N domains (100 by default) pushed over the one domain;
- then each repeated: one domain added (a Terraform change, a new certificate, a Caddy
  load); one domain's monitoring switched (a Terraform change, new probe targets); every
  domain's memory changed (every domain and service updated, every replica rolled); a
  comment edited: a run in which nothing changes (the no-op run).

The same no-op run from the terminal (`atl infra up`, in-process) is timed as well.

A second table splits the seconds from the push to the first stage, read from the run's
record and its events in the instance (medians over every push), each line with where the
seconds go and whose they are. Any other run a push's run waited behind (the drift schedule's,
every 10 minutes, holds the same pool) is named below it.

With `--via hook` (the default) the bare repository's post-receive hook (`atl utils git-hook
install`) tells a push receiver at once, and the sensor polls once a minute; with `--via poll`
the sensor finds each push at its next poll, every 5 s. With `--backend pg` Terraform keeps
its state in a throwaway PostgreSQL server on loopback (bench/scale.py says why, at scale).
`--scrape-interval 15s` sets how often Prometheus probes every domain (the example's 2 s is
for a handful of domains: at 1,000 it would be 500 TLS probes a second through Caddy).

    python bench/gitops.py [--domains 100] [--repeat 3] [--via hook|poll] [--backend local|pg]
                            [--scrape-interval 15s]
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

from dagster import DagsterEventType, DagsterInstance  # noqa: E402

from atl_pipeline import githook  # noqa: E402
from atl_pipeline.orchestration.receiver import PATH, Receiver  # noqa: E402
from atl_pipeline.project import Project  # noqa: E402
from atl_pipeline.runtime.local import deployed_runtime  # noqa: E402
from tests.conftest import copy_project  # noqa: E402
from tests.dagster_dev import DagsterDev  # noqa: E402
from tests.git_helpers import Remote  # noqa: E402
from tests.postgres import PostgresServer  # noqa: E402

SECRET = "bench-secret"
PG_STATE = "state: {backend: pg, conn_str: 'env:ATL_BENCH_STATE_PG'}\n"
# a production domain must be monitored (the policy check): the bench switches one domain's monitoring off
MONITORING_EXCEPTION = ("policy: {exceptions: [{policy: production_monitoring, reason: the benchmark switches one "
                        "domain's monitoring}]}\n")
TIMEOUT = 3600.0
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


def with_domains(text: str, count: int, settings: str = "") -> str:
    """The example's services (and `settings`, top-level blocks), serving `count` domains."""
    head = text[:text.index("domains:")].replace("services:\n", settings + "services:\n", 1)
    domains = "".join(DOMAIN.format(name=f"site{i}.bench.allthingslinux.org", service=("backend-api", "website")[i % 2],
                                    monitoring="true") for i in range(count))
    return f"{head}domains:\n{domains}"


def every_memory_changed(text: str) -> str:
    return text.replace('"128Mi"', '"192Mi"') if '"128Mi"' in text else text.replace('"192Mi"', '"128Mi"')


# the run's milestones before its first stage, each with what the seconds before it are spent on
MILESTONES = (
    ("run created", "created", "ours: the hook, the receiver asking the webserver to evaluate the sensor "
     "(or its next poll)"),
    ("run queued", DagsterEventType.RUN_ENQUEUED, "Dagster: the webserver records each stage's planned "
     "materialization"),
    ("run dequeued", DagsterEventType.RUN_STARTING, "Dagster: queued until the daemon's next look (1 s, its "
     "shortest)"),
    ("worker started", DagsterEventType.ENGINE_EVENT, "Dagster: the code server spawns a run worker: Python, "
     "Dagster, the instance"),
    ("code loaded", DagsterEventType.RUN_START, "ours: the worker imports atl_pipeline and loads the defs folder"),
    ("first stage", DagsterEventType.STEP_START, "Dagster: the run's plan and resources, up to the first stage"),
)


def run_start(instance: DagsterInstance, run_id: str, pushed: float) -> list[float]:
    """Seconds spent before each milestone of MILESTONES: the push to the first stage, split."""
    record = instance.get_run_record_by_id(run_id)
    times = {"created": record.create_timestamp.timestamp()}
    for entry in instance.all_logs(run_id):
        if entry.dagster_event:
            times.setdefault(entry.dagster_event.event_type, entry.timestamp)
    moments = [pushed, *(times[milestone] for _, milestone, _ in MILESTONES)]
    return [after - before for before, after in zip(moments, moments[1:], strict=False)]


def push_and_time(dev: DagsterDev, remote: Remote, edit) -> tuple[float, float, float, str, float]:
    """Seconds from the push to the run's start, to its success, the run's duration; its id, and the push's time."""
    text = remote.clone.joinpath("domains.yml").read_text()
    remote.clone.joinpath("domains.yml").write_text(edit(text))
    pushed = time.time()  # the hook runs inside `git push`: the clock starts before it
    sha = remote.commit("bench", "domains.yml")
    run = dev.wait_for_run({"atl/commit": sha}, timeout=TIMEOUT)
    if run["status"] != "SUCCESS":
        raise SystemExit(f"run {run['runId']} for {sha[:12]}: {run['status']}: {dev.failures(run['runId'])}")
    return run["startTime"] - pushed, run["endTime"] - pushed, run["endTime"] - run["startTime"], run["runId"], pushed


def main() -> None:
    options = argparse.ArgumentParser()
    options.add_argument("--domains", type=int, default=100)
    options.add_argument("--repeat", type=int, default=3)
    options.add_argument("--via", choices=["hook", "poll"], default="hook")
    options.add_argument("--backend", choices=["local", "pg"], default="local")
    options.add_argument("--scrape-interval", help="Prometheus's scrape_interval, such as 15s (default: the example's)")
    args = options.parse_args()

    temporary = Path(tempfile.mkdtemp(prefix="atl-bench-"))
    postgres = dev = receiver = project = None
    succeeded = False
    try:
        postgres = PostgresServer().start() if args.backend == "pg" else None
        if postgres:
            os.environ["ATL_BENCH_STATE_PG"] = postgres.url
        project = copy_project(temporary / "project")
        example = project.domains_file.read_text()
        settings = MONITORING_EXCEPTION + (PG_STATE if postgres else "") + (
            f"prometheus: {{scrape_interval: {args.scrape_interval}}}\n" if args.scrape_interval else "")
        project.domains_file.write_text(with_domains(example, 1, settings))
        remote = Remote.create(temporary, project.root)
        poll = "60" if args.via == "hook" else "5"
        dev = DagsterDev.start(project, temporary / "dagster-dev.log", ATL_GIT_REMOTE=str(remote.origin),
                               ATL_GIT_BRANCH="main", ATL_GIT_POLL_SECONDS=poll)
        receiver = Receiver(("127.0.0.1", 0), dev.url, {"bench": SECRET})
        receiver.RequestHandlerClass = type("Quiet", (receiver.RequestHandlerClass,), {"log_message": lambda *_: None})
        receiver.serve_in_background()
        if args.via == "hook":
            githook.install(remote.origin, f"http://127.0.0.1:{receiver.server_address[1]}{PATH}", SECRET)
        measure(args, project, example, settings, remote, dev, poll)
        succeeded = True
    finally:
        if receiver:
            receiver.shutdown()
        if dev:
            dev.stop()
        if project:
            deployed_runtime(project).stop()
        if postgres:
            postgres.stop()
        if succeeded:
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            print(f"kept for a post-mortem: {temporary}")


def measure(args: argparse.Namespace, project: Project, example: str, settings: str, remote: Remote,
            dev: DagsterDev, poll: str) -> None:
    counter = iter(range(10**6))
    changes = {
        "one domain added": lambda text: text + DOMAIN.format(
            name=f"new{next(counter)}.bench.allthingslinux.org", service="website", monitoring="true"),
        "one domain's monitoring switched": lambda text: text.replace(
            "monitoring: true", "monitoring: false", 1) if "monitoring: false" not in text
        else text.replace("monitoring: false", "monitoring: true", 1),
        "every domain's memory changed": every_memory_changed,
        "no-op (a comment edited)": lambda text: text + f"# bench {next(counter)}\n",
    }
    dev.wait_for_run({"atl/commit": remote.git("rev-parse", "HEAD").strip()}, timeout=TIMEOUT)
    print(f"{args.domains} domains, {args.backend} state backend, scrape interval {args.scrape_interval or '2s'}; "
          f"pushes via {args.via} (the sensor polls every "
          f"{poll} s); median of {args.repeat} below the first deploy\n")
    print(f"{'push':<34} {'push->started s':>15} {'push->green s':>13} {'run s':>6}")
    first = push_and_time(dev, remote, lambda text: with_domains(example, args.domains, settings))
    print(f"{f'first deploy ({args.domains} domains)':<34} {first[0]:>15.1f} {first[1]:>13.1f} {first[2]:>6.1f}")
    runs = []
    for name, edit in changes.items():
        timings = [push_and_time(dev, remote, edit) for _ in range(args.repeat)]
        runs += [(run_id, pushed) for *_, run_id, pushed in timings]
        started, green, run = (statistics.median(column) for column in list(zip(*timings, strict=True))[:3])
        print(f"{name:<34} {started:>15.1f} {green:>13.1f} {run:>6.1f}")
    print(f"{'no-op, `atl infra up` (terminal)':<34} {'-':>15} {cli_noop(project):>13.1f} {'-':>6}")
    instance = DagsterInstance.from_config(str(project.dagster_home))
    print_run_start(instance, runs)
    print_waits(instance, [run_id for run_id, _ in runs + [first[3:]]])


def print_run_start(instance: DagsterInstance, runs: list[tuple[str, float]]) -> None:
    phases = list(zip(*(run_start(instance, run_id, pushed) for run_id, pushed in runs), strict=True))
    print(f"\nfrom the push to the first stage, median of {len(runs)} runs\n")
    print(f"{'until':<15} {'s':>5}  where the seconds go")
    for (name, _, reason), seconds in zip(MILESTONES, phases, strict=True):
        print(f"{name:<15} {statistics.median(seconds):>5.2f}  {reason}")


def print_waits(instance: DagsterInstance, pushed: list[str]) -> None:
    """Each push's run that started while another run was in progress, with that run."""
    records = instance.get_run_records()
    for run_id in pushed:
        run = next(record for record in records if record.dagster_run.run_id == run_id)
        created = run.create_timestamp.timestamp()
        behind = [other for other in records if other.dagster_run.run_id not in pushed and other.start_time
                  and other.start_time < run.start_time and (other.end_time or float("inf")) > created]
        for other in behind:
            print(f"run {run_id[:8]} waited {run.start_time - created:.1f} s to start, behind "
                  f"{other.dagster_run.job_name} run {other.dagster_run.run_id[:8]} "
                  f"({other.dagster_run.tags.get('atl/trigger', 'no trigger tag')})")


def cli_noop(project: Project) -> float:
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "atl"), "infra", "up"], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "ATL_PROJECT_DIR": str(project.root)})
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
