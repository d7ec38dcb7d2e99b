"""A load step up and back down, through the real Prometheus, `autoscaler` sensor, daemon and run
worker: seconds until the new replicas serve, and the requests served and failed meanwhile.

The example under `dg dev`, backend-api at `autoscale: {min: 1, max: 4, scale_down_after: 20s}`
with the autoscaler ticking every 3 s and a scrape every second. First the rate of bench/load.py's
steady load (one HTTPS request after another through Caddy) is measured against one replica, and
the target set to a quarter of it less 10%: that load is four replicas' worth. Then, repeated:

- **step up**: the load starts; seconds until 4 replicas serve (the scaling runs ended), with the
  load's requests served and failed until then;
- **step down**: the load stops and a light client (a request every 0.1 s) takes its place;
  seconds until 1 replica serves (at least `scale_down_after`), with that client's requests.

    python bench/autoscale.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from atl_pipeline.runtime.local import deployed_runtime  # noqa: E402
from bench.table import Table  # noqa: E402
from tests.conftest import copy_project, kill_stack  # noqa: E402
from tests.dagster_dev import DagsterDev  # noqa: E402
from tests.runtime_helpers import Load, through_lb  # noqa: E402

API = "api.allthingslinux.org"
TIMEOUT = 300.0
AUTOSCALE = ("    autoscale: {min: 1, max: 4, target: {requests_per_second_per_replica: TARGET}, "
             "scale_down_after: 20s}\n")


class LightClient(threading.Thread):
    """A request every 0.1 s: what is served while the replicas go."""

    def __init__(self, project):
        super().__init__(daemon=True)
        self.project, self.stopped, self.served, self.failed = project, threading.Event(), 0, 0

    def run(self) -> None:
        while not self.stopped.is_set():
            if through_lb(self.project, API).status == 200:
                self.served += 1
            else:
                self.failed += 1
            time.sleep(0.1)


def replicas(project) -> int:
    return deployed_runtime(project).deployed_services()["backend-api"].replicas


def wait(what: str, done) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not within {TIMEOUT:.0f} s")
        time.sleep(0.2)


def settled(dev: DagsterDev, project, count: int) -> bool:
    """`count` replicas serve, and no scaling or deploy run is still going."""
    return replicas(project) == count and all(run["status"] in {"SUCCESS", "FAILURE", "CANCELED"}
                                              for run in dev.runs({"atl/trigger": "autoscale"}))


def main() -> None:
    options = argparse.ArgumentParser()
    options.add_argument("--repeat", type=int, default=2)
    args = options.parse_args()

    root = Path(tempfile.mkdtemp(prefix="atl-bench-"))
    project = copy_project(root / "project")
    text = project.domains_file.read_text().replace("replicas: 3", "replicas: 1", 1).replace(
        'cpu: "500m"', 'cpu: "250m"', 1).replace("\ndomains:", "\nprometheus: {scrape_interval: 1s}\n\ndomains:", 1)
    scaling = text.replace("    health: {path: /healthz}\n", "    health: {path: /healthz}\n" + AUTOSCALE, 1)
    project.domains_file.write_text(scaling.replace("TARGET", "1000000"))  # nothing scales yet
    dev = DagsterDev.start(project, root / "dg-dev.log", ATL_AUTOSCALE_SECONDS="3")
    try:
        deploys = lambda: sum(run["status"] == "SUCCESS" for run in dev.runs({"atl/trigger": "file"}))  # noqa: E731
        wait("the first deploy", lambda: deploys() == 1)
        began = time.monotonic()
        with Load(project, API, root / "rate.json") as load:
            time.sleep(5)
        rate = load.result["ok"] / (time.monotonic() - began)
        target = max(1, int(rate / 4 * 0.9))
        project.domains_file.write_text(scaling.replace("TARGET", str(target)))
        wait("the target deployed", lambda: deploys() == 2)
        print(f"steady load: {rate:.0f} requests/s on 1 replica; target {target} requests/s per replica")
        table = Table({"event": 9, "seconds to serve": 16, "served": 7, "failed": 6})
        ups, downs = [], []
        for attempt in range(args.repeat):
            started = time.monotonic()
            with Load(project, API, root / f"up{attempt}.json") as load:
                wait("4 replicas", lambda: settled(dev, project, 4))
                ups.append(time.monotonic() - started)
            table.row("1 -> 4", f"{ups[-1]:.1f}", load.result["ok"], load.result["failed"])
            client = LightClient(project)
            client.start()
            started = time.monotonic()
            wait("1 replica", lambda: settled(dev, project, 1))
            downs.append(time.monotonic() - started)
            client.stopped.set()
            table.row("4 -> 1", f"{downs[-1]:.1f}", client.served, client.failed)
        print(f"median: up {statistics.median(ups):.1f} s, down {statistics.median(downs):.1f} s "
              "(of which 20 s is scale_down_after)")
    finally:
        dev.stop()
        kill_stack(project)


if __name__ == "__main__":
    main()
