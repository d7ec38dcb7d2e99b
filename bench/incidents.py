"""From a fault to a recovered service, through the real Prometheus, Alertmanager, `alerts`
sensor, daemon and run worker.

The example project, watched by `dg dev` (the file sensor deploys each edit), with the alert
rules' windows shortened through `prometheus.alert_window` and `alert_for` (10 s and 2 s by
default) and a scrape every second. Each fault, repeated:

- **degrading release**: backend-api deployed with `--fail-after N` (its health gate passes,
  then `/` answers 500) while a client asks for `/` through Caddy every 0.1 s; the fault
  starts at the client's first 500, and it has recovered at the first 200 after its last 500;
- **replica kept down**: one website replica stopped through supervisord, which then does
  not start it again; recovered once it runs again;
- **certificate near expiry**: Caddy made to serve docs a certificate of its own CA that
  expires in 13 days (the alert's threshold is 14), which its own renewal leaves alone;
  recovered once a fresh one is served.

Each row: seconds from the fault to the alert firing in Alertmanager, to the remediation
run starting, to the service recovered, and to the alert resolved (the incident's recovery).
The last line estimates the same with the production windows: the rule's own `for:` and
window in place of the shortened ones, plus the pipeline's part as measured.

    python bench/incidents.py [--repeat 3] [--window 10s] [--for 2s]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from atl_pipeline.certificates import served_certificate  # noqa: E402
from atl_pipeline.config.model import duration_seconds  # noqa: E402
from atl_pipeline.operations.remediation import Incident, IncidentLog  # noqa: E402
from atl_pipeline.project import Project  # noqa: E402
from atl_pipeline.runtime.local import deployed_runtime  # noqa: E402
from bench.table import Table  # noqa: E402
from tests.conftest import copy_project, kill_stack  # noqa: E402
from tests.dagster_dev import DagsterDev  # noqa: E402
from tests.runtime_helpers import plant_certificate, through_lb  # noqa: E402

API = "api.allthingslinux.org"
DOCS = "docs.allthingslinux.org"
TIMEOUT = 300.0
# the production rules (atl_pipeline/monitoring/rules.yml): each alert's `for:`
PRODUCTION_FOR = {"ErrorRateAboveSLO": 300, "InstanceDown": 60, "CertificateExpiringSoon": 600}


class Client(threading.Thread):
    """GET / on api every 0.1 s, recording when each answer came and whether it was a 200."""

    def __init__(self, project: Project):
        super().__init__(daemon=True)
        self.project, self.stopped = project, threading.Event()
        self.answers: list[tuple[float, bool]] = []

    def run(self) -> None:
        while not self.stopped.is_set():
            self.answers.append((time.time(), through_lb(self.project, API).status == 200))
            time.sleep(0.1)

    def first_failure(self) -> float | None:
        return next((at for at, ok in self.answers if not ok), None)

    def served_again(self) -> float:
        """The first 200 after the last failure: from then on the client is served."""
        last = max(at for at, ok in self.answers if not ok)
        return next(at for at, ok in self.answers if ok and at > last)


def wait(what: str, found: Callable[[], object], timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while not (value := found()):
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)
    return value


def degrading_release(project: Project, dev: DagsterDev, attempt: int) -> tuple[float, Callable[[], float]]:
    """Deploy a release of backend-api that fails after some answers, under a client's requests: when
    the client first got a 500, and when it is served again."""
    text = project.domains_file.read_text()
    command = '--port, "{port}"'
    start = text.index(command) + len(command)
    project.domains_file.write_text(text[:start] + f', --fail-after, "{5 + attempt}"' + text[text.index("]", start):])
    deployed = _deploys(dev)
    wait("the degrading release deployed", lambda: _deploys(dev) > deployed)
    client = Client(project)
    client.start()

    def recovered() -> float:
        time.sleep(2)  # served for a while after the remediation: the first 200 after the last 500
        client.stopped.set()
        return client.served_again()

    return wait("the first 500", client.first_failure), recovered


def replica_kept_down(project: Project, dev: DagsterDev, attempt: int) -> tuple[float, Callable[[], float]]:
    """Stop a website replica, which supervisord then leaves down: when, and when it ran again
    (watched every 0.1 s from the fault on)."""
    supervisor = deployed_runtime(project).supervisor
    group = deployed_runtime(project).deployed_services()["website"].group
    replica = f"{group}:{group}_0"
    fault = time.time()
    supervisor.rpc.stopProcess(replica, True)
    running: list[float] = []

    def watch() -> None:
        watcher = deployed_runtime(project).supervisor  # its own connection: XML-RPC proxies are not thread-safe
        while watcher.rpc.getProcessInfo(replica)["statename"] != "RUNNING":
            time.sleep(0.1)
        running.append(time.time())

    threading.Thread(target=watch, daemon=True).start()
    return fault, lambda: wait("the replica running again", lambda: running and running[0])


def certificate_near_expiry(project: Project, dev: DagsterDev, attempt: int) -> tuple[float, Callable[[], float]]:
    """Caddy made to serve docs a certificate of its own CA that expires in 13 days: when, and when a
    fresh one was served (watched every 0.2 s from the fault on)."""
    frontend = deployed_runtime(project).frontend
    fault = time.time()
    plant_certificate(project, DOCS, days=13)
    renewed: list[float] = []

    def watch() -> None:
        while served_certificate(frontend, DOCS).days_left < 14:
            time.sleep(0.2)
        renewed.append(time.time())

    threading.Thread(target=watch, daemon=True).start()
    return fault, lambda: wait("a fresh certificate", lambda: renewed and renewed[0])


def _deploys(dev: DagsterDev) -> int:
    return sum(run["status"] == "SUCCESS" for run in dev.runs({"atl/trigger": "file"}))


def _episode(project: Project, alert: str, after: float) -> Incident | None:
    """The incident of the alert's first episode since the fault."""
    found = [i for i in IncidentLog(project).incidents() if i.alert == alert and i.detected_at >= after - 1]
    return found[0] if found else None


def _remediation_started(dev: DagsterDev, episode: str) -> float | None:
    runs = dev.runs({"dagster/run_key": episode})
    return runs[0]["startTime"] if runs and runs[0]["startTime"] else None


FAULTS = {"degrading release": (degrading_release, "ErrorRateAboveSLO"),
          "replica kept down": (replica_kept_down, "InstanceDown"),
          "certificate near expiry": (certificate_near_expiry, "CertificateExpiringSoon")}


def main() -> None:
    options = argparse.ArgumentParser()
    options.add_argument("--repeat", type=int, default=3)
    options.add_argument("--window", default="10s", help="prometheus.alert_window")
    options.add_argument("--for", dest="hold", default="2s", help="prometheus.alert_for")
    args = options.parse_args()

    project = copy_project(Path(tempfile.mkdtemp(prefix="atl-bench-")) / "project")
    settings = (f"prometheus: {{scrape_interval: 1s, alert_window: {args.window}, alert_for: {args.hold}}}\n"
                "alerting: {group_wait: 1s, group_interval: 2s, remediation: {cooldown: 1s}}\n")
    project.domains_file.write_text(project.domains_file.read_text().replace("\ndomains:", f"\n{settings}\ndomains:"))
    dev = DagsterDev.start(project, project.root / "dg-dev.log")
    try:
        wait("the first deploy", lambda: [run for run in dev.runs({"atl/trigger": "file"})
                                          if run["status"] == "SUCCESS"])
        print(f"alert windows {args.window}, for {args.hold}; seconds from the fault:")
        table = Table({"fault": 32, "alert firing": 12, "remediation started": 19, "recovered": 9,
                       "alert resolved": 14})
        measured: dict[str, list[tuple[float, ...]]] = {}
        for name, (fault, alert) in FAULTS.items():
            for attempt in range(args.repeat):
                began, recovered = fault(project, dev, attempt)
                incident = wait(f"{alert} firing", lambda: _episode(project, alert, began))  # noqa: B023
                started = wait("the remediation", lambda: _remediation_started(dev, incident.episode))  # noqa: B023
                dev.wait_until_finished(dev.runs({"dagster/run_key": incident.episode})[0]["runId"])
                served = recovered()
                over = wait(f"{alert} resolved", lambda: _episode(project, alert, began).recovered_at)  # noqa: B023
                row = (incident.detected_at - began, started - began, served - began, over - began)
                measured.setdefault(name, []).append(row)
                table.row(name, *(f"{value:.1f}" for value in row))
        for name, rows in measured.items():
            medians = [statistics.median(column) for column in zip(*rows, strict=True)]
            table.row(f"{name} (median)", *(f"{value:.1f}" for value in medians))
        _production(measured, args)
    finally:
        dev.stop()
        kill_stack(project)


def _production(measured: dict[str, list[tuple[float, ...]]], args: argparse.Namespace) -> None:
    """With the production rules: their `for:` in place of the shortened one, the pipeline's part as measured."""
    print("\nwith the production rules (estimate: the rule's `for:` plus the pipeline's part measured above):")
    shortened = duration_seconds(args.hold)
    for name, rows in measured.items():
        alert = FAULTS[name][1]
        recovered = statistics.median(row[2] for row in rows)
        print(f"  {name}: recovered {recovered - shortened + PRODUCTION_FOR[alert]:.0f} s after the fault "
              f"({alert} `for: {PRODUCTION_FOR[alert] // 60}m`)")


if __name__ == "__main__":
    main()
