"""Alerts that act, with the real processes: a release that degrades after its deploy fires the
error-rate alert in Prometheus, Alertmanager notifies a webhook (this test's HTTP server) with its
token, the `alerts` sensor of a real `dg dev` starts a remediation that rolls the service back, the
alert resolves and the incident is recorded; a second firing inside the cool-down does nothing and
says why. The rule windows are shortened through `prometheus:` settings, not by editing the rules."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from atl_pipeline.certificates import served_certificate
from atl_pipeline.cli import main
from atl_pipeline.defs.alerts import POLL_SECONDS
from atl_pipeline.monitoring.alertmanager import Alertmanager
from atl_pipeline.project import Project
from atl_pipeline.runtime.local import deployed_runtime
from tests.conftest import copy_project, kill_stack
from tests.dagster_dev import DagsterDev
from tests.runtime_helpers import plant_certificate, through_lb, wait_for

pytestmark = pytest.mark.slow

TOKEN = "a-webhook-token-that-no-log-may-show"
API = "api.allthingslinux.org"
DOCS = "docs.allthingslinux.org"
SETTINGS = """
prometheus: {scrape_interval: 1s, alert_window: 10s, alert_for: 2s}
alerting:
  group_wait: 1s
  group_interval: 2s
  receivers:
    oncall: {webhook: {url: "http://127.0.0.1:%d/alerts", token: env:ATL_TEST_WEBHOOK_TOKEN}}
"""


class Webhook(ThreadingHTTPServer):
    """What Alertmanager posts: each notification's Authorization header and body."""

    def __init__(self):
        self.received: list[tuple[str, dict]] = []
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def alerts(self, status: str) -> list[str]:
        return [alert["labels"]["alertname"] for _, body in self.received for alert in body["alerts"]
                if alert["status"] == status]


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (the standard library's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.received.append((self.headers.get("Authorization", ""), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("alerting")
    project = copy_project(root / "project")
    webhook = Webhook()
    text = project.domains_file.read_text()
    project.domains_file.write_text(text.replace("\ndomains:", SETTINGS % webhook.server_address[1] + "\ndomains:", 1))
    dev = DagsterDev.start(project, root / "dg-dev.log", ATL_TEST_WEBHOOK_TOKEN=TOKEN)
    try:
        assert dev.wait_for_run({"atl/trigger": "file"})["status"] == "SUCCESS", dev.log.read_text()[-3000:]
        yield project, dev, webhook
    finally:
        dev.stop()
        kill_stack(project)
        webhook.shutdown()


def test_a_release_that_degrades_is_rolled_back_by_the_alert_it_fires(stack, monkeypatch, capsys):
    project, dev, webhook = stack
    runtime = deployed_runtime(project)
    good = runtime.deployed_services()["backend-api"].release
    text = project.domains_file.read_text()
    project.domains_file.write_text(text.replace('--port, "{port}"]', '--port, "{port}", --fail-after, "5"]', 1))
    wait_for("the degrading release deployed", lambda: [
        run for run in dev.runs({"atl/trigger": "file"}) if run["status"] == "SUCCESS"][1:])
    bad = deployed_runtime(project).deployed_services()["backend-api"].release
    assert bad != good  # the health gate passed: /healthz stays green

    def remediation() -> dict | None:
        through_lb(project, API)  # the clients that see the 500s
        runs = dev.runs({"atl/alert": "ErrorRateAboveSLO"})
        return runs[0] if runs and runs[0]["status"] in {"SUCCESS", "FAILURE"} else None

    run = wait_for("a remediation run", remediation)
    assert run["status"] == "SUCCESS", dev.failures(run["runId"])
    tags = {tag["key"]: tag["value"] for tag in run["tags"]}
    assert (tags["atl/trigger"], tags["atl/domain"], tags["dagster/sensor_name"]) == ("alert", API, "alerts")
    assert tags["dagster/run_key"].startswith(tags["atl/fingerprint"] + "@")
    record = deployed_runtime(project).deployed()
    assert record["services"]["backend-api"]["release"] == good
    assert record["held"] == {"backend-api": bad}  # a deploy of the same file keeps the good release
    assert through_lb(project, API).status == 200

    monkeypatch.setenv("ATL_PROJECT_DIR", str(project.root))
    recovered = wait_for("the incident recovered", lambda: _incident(capsys, "ErrorRateAboveSLO")["recovered_at"],
                         why=lambda: f"Alertmanager's alerts: {Alertmanager.of(project).active()}; "
                                     f"incidents: {(project.state_dir / 'incidents.jsonl').read_text()}")
    incident = _incident(capsys, "ErrorRateAboveSLO")
    assert (incident["alert"], incident["domain"], incident["service"], incident["action"], incident["outcome"]) == (
        "ErrorRateAboveSLO", API, "backend-api", "roll back", "succeeded")
    assert incident["time_to_recover"] == pytest.approx(recovered - incident["detected_at"])

    # the replicas the roll back stopped are no longer scraped: nothing stays firing
    wait_for("every incident recovered", lambda: (main(["infra", "incidents"]), capsys.readouterr())[0] == 0)
    wait_for("the webhook told of the alert and of its end", lambda: "ErrorRateAboveSLO" in webhook.alerts("resolved"))
    assert "ErrorRateAboveSLO" in webhook.alerts("firing")
    assert {authorization for authorization, _ in webhook.received} == {f"Bearer {TOKEN}"}
    _assert_never_logged(project, dev.log, TOKEN)


def test_a_second_firing_inside_the_cool_down_does_nothing_and_says_why(stack):
    project, dev, _ = stack
    release = deployed_runtime(project).deployed()["services"]["backend-api"]["release"]
    manager = Alertmanager.of(project)
    labels = {"alertname": "AvailabilityBelowSLO", "domain": API, "severity": "critical", "instance": "this test"}
    manager.raise_alert(labels, "test", 60)  # one of its own: the probes may have fired one under load
    (raised,) = wait_for("the alert", lambda: [a for a in manager.active() if a.labels == labels])
    run = wait_for("the second remediation run", lambda: [
        run for run in dev.runs({"atl/fingerprint": raised.fingerprint}) if run["status"] in {"SUCCESS", "FAILURE"}])[0]
    assert run["status"] == "SUCCESS", dev.failures(run["runId"])
    described = json.dumps(dev.graphql(MATERIALIZATION, runId=run["runId"]))
    assert "nothing: backend-api was remediated" in described and "the cool-down is 10m" in described
    assert deployed_runtime(project).deployed()["services"]["backend-api"]["release"] == release


MATERIALIZATION = """
query($runId: ID!) { logsForRun(runId: $runId) { ... on EventConnection { events {
  ... on MaterializationEvent { metadataEntries { label ... on TextMetadataEntry { text } } } } } } }"""


def _incident(capsys, alert: str) -> dict:
    """The newest incident of this alert, as `atl infra incidents --json` prints it."""
    main(["infra", "incidents", "--json"])
    return next(incident for incident in json.loads(capsys.readouterr().out) if incident["alert"] == alert)


def _bytes(path: Path) -> bytes:
    """What a file holds; nothing for one gone since it was listed (SQLite's -wal and -shm come and go)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _assert_never_logged(project: Project, dagster_log: Path, secret: str) -> None:
    """Nowhere but the token file Alertmanager reads and the log collector's list of what to mask: not
    Alertmanager's configuration, any program's log, the log store, the Dagster instance (runs, event
    logs) or the UI's log."""
    files = [path for path in project.state_dir.rglob("*") if path.is_file()] + [dagster_log]
    holding = sorted(path for path in files if secret.encode() in _bytes(path))
    assert holding == [project.state_dir / "runtime" / "collector" / "secrets.conf",  # what the log collector masks
                       project.state_dir / "runtime" / "monitoring" / "secrets" / "oncall.token"]
    status = requests.get(f"{Alertmanager.of(project).url}/api/v2/status", auth=Alertmanager.of(project).auth,
                          timeout=5).json()
    assert secret not in json.dumps(status)


def test_a_silenced_domain_starts_no_remediation(stack, monkeypatch, capsys):
    project, dev, _ = stack
    monkeypatch.setenv("ATL_PROJECT_DIR", str(project.root))
    assert main(["utils", "silence", "www.allthingslinux.org", "--for", "30m", "--comment", "test"]) == 0
    assert "silenced www.allthingslinux.org for 30m" in capsys.readouterr().out
    Alertmanager.of(project).raise_alert({"alertname": "LatencyAboveSLO", "domain": "www.allthingslinux.org"},
                                          "test", 60)
    (alert,) = wait_for("the alert held back", lambda: [
        alert for alert in Alertmanager.of(project).active() if alert.name == "LatencyAboveSLO" and alert.silenced])
    assert main(["infra", "status", "--json"]) == 0
    firing = json.loads(capsys.readouterr().out)["alerting"]["firing"]
    assert {"alert": "LatencyAboveSLO", "silenced": True}.items() <= next(
        a for a in firing if a["alert"] == "LatencyAboveSLO").items()
    time.sleep(2 * POLL_SECONDS)  # two ticks of the sensor
    assert dev.runs({"atl/alert": "LatencyAboveSLO"}) == []


def test_a_certificate_near_expiry_is_renewed(stack, monkeypatch, capsys):
    project, dev, _ = stack
    plant_certificate(project, DOCS, days=13)  # the alert's threshold is 14 days
    frontend = deployed_runtime(project).frontend
    assert served_certificate(frontend, DOCS).days_left < 13
    run = wait_for("the renewal", lambda: [run for run in dev.runs({"atl/alert": "CertificateExpiringSoon"})
                                           if run["status"] in {"SUCCESS", "FAILURE"}])[0]
    assert run["status"] == "SUCCESS", dev.failures(run["runId"])
    assert served_certificate(frontend, DOCS).days_left > 50  # Caddy's next one: 60 days
    monkeypatch.setenv("ATL_PROJECT_DIR", str(project.root))
    incident = wait_for("the renewal recovered", lambda: _recovered(capsys, "CertificateExpiringSoon", "website"))
    assert (incident["domain"], incident["action"], incident["outcome"]) == (DOCS, "renew certificate", "succeeded")


def test_a_replica_kept_down_is_healed(stack, monkeypatch, capsys):
    project, dev, _ = stack
    runtime = deployed_runtime(project)
    group = runtime.deployed_services()["website"].group
    runtime.supervisor.rpc.stopProcess(f"{group}:{group}_0", True)  # supervisord does not bring it back
    run = wait_for("the heal", lambda: [run for run in dev.runs({"atl/alert": "InstanceDown", "atl/service": "website"})
                                        if run["status"] in {"SUCCESS", "FAILURE"}])[0]
    assert run["status"] == "SUCCESS", dev.failures(run["runId"])
    assert "heal: " in json.dumps(dev.graphql(MATERIALIZATION, runId=run["runId"]))
    assert {p["statename"] for p in runtime.supervisor.rpc.getAllProcessInfo() if p["group"] == group} == {"RUNNING"}
    monkeypatch.setenv("ATL_PROJECT_DIR", str(project.root))
    incident = wait_for("the heal recovered", lambda: _recovered(capsys, "InstanceDown", "website"))
    assert (incident["action"], incident["outcome"]) == ("heal", "succeeded")


def _recovered(capsys, alert: str, service: str) -> dict | None:
    main(["infra", "incidents", "--json"])
    return next((incident for incident in json.loads(capsys.readouterr().out) if incident["alert"] == alert
                 and incident["service"] == service and incident["recovered_at"]), None)
