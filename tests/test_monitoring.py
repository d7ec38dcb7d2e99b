"""Monitoring with real Prometheus, blackbox exporter and promtool: the alert rules' unit
tests, the generated configuration, targets verified up, and a target seen going down."""

from __future__ import annotations

import json
import re
import subprocess
import time
from importlib import resources
from pathlib import Path

import pytest
import requests
import yaml

from atl_pipeline.cli import main
from atl_pipeline.config import load_config
from atl_pipeline.monitoring import alertmanager
from atl_pipeline.monitoring.alertmanager import Alertmanager
from atl_pipeline.monitoring.prometheus import Monitoring, MonitoringError
from atl_pipeline.orchestration.runner import run_deploy
from atl_pipeline.project import Project
from atl_pipeline.runtime.local import deployed_runtime
from atl_pipeline.targets import target_of
from tests.ports import free_port, service_ports

pytestmark = pytest.mark.slow  # promtool, Prometheus and the blackbox exporter on a deployed stack

API_PORT, WEB_PORT = service_ports()  # the example's services' first ports in this test process

RULES = resources.files("atl_pipeline.monitoring")


UNPROBED = "policy: {exceptions: [{policy: production_monitoring, reason: the test stops probing docs}]}\n"


def prometheus(project: Project, query: str) -> list[dict]:
    return prometheus_api(project, "query", query=query)["result"]


def prometheus_api(project: Project, endpoint: str, **params: str) -> dict:
    url = f"http://127.0.0.1:{deployed_runtime(project).target.prometheus_port}/api/v1/{endpoint}"
    return requests.get(url, params=params, timeout=5).json()["data"]


def test_every_alert_has_unit_tests_that_pass():
    with resources.as_file(RULES) as folder:
        result = subprocess.run(["promtool", "test", "rules", "rules_test.yml"], cwd=folder, capture_output=True,
                                text=True, check=False)
        rules = yaml.safe_load((folder / "rules.yml").read_text())
        tests = yaml.safe_load((folder / "rules_test.yml").read_text())
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    firing = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert alerts == firing == {"InstanceDown", "AvailabilityBelowSLO", "LatencyAboveSLO", "ErrorRateAboveSLO",
                                "CertificateExpiringSoon"}


def test_the_stack_is_monitored_and_a_stopped_replica_shows_as_down(project: Project, capsys):
    text = project.domains_file.read_text()
    docs = text.index('  - name: "docs')
    project.domains_file.write_text(text[:docs] + text[docs:].replace("monitoring: true", "monitoring: false")
                                  + UNPROBED)
    stages = []
    assert run_deploy(project, on_stage=stages.append).success, stages
    assert next(s.detail for s in stages if s.stage == "monitoring") == "8/8 targets up, 5 rules loaded"

    probes = {r["metric"]["domain"]: r["value"][1] for r in prometheus(project, "probe_success")}
    assert probes == {"api.allthingslinux.org": "1", "www.allthingslinux.org": "1"}
    assert prometheus(project, 'up{job="caddy"}')[0]["value"][1] == "1"

    again = []
    unchanged = run_deploy(project, on_stage=again.append)
    assert unchanged.success
    assert next(s.detail for s in again if s.stage == "monitoring") == "8/8 targets up, 5 rules loaded"
    assert unchanged.metadata["monitoring"]["verified"] == "unchanged: Prometheus's view checked"

    project.domains_file.write_text(text)  # docs monitored again: its probe is a ninth target
    third = []
    added = run_deploy(project, on_stage=third.append)
    assert added.success
    detail = next(s.detail for s in third if s.stage == "monitoring")
    verified = added.metadata["monitoring"]["verified"]
    assert "reloaded" not in detail  # a new target is a new line in a file Prometheus watches
    if verified == "by Prometheus":
        assert detail == "9/9 targets up, 5 rules loaded"
        active = prometheus_api(project, "targets")["activeTargets"]  # what Prometheus had as the stage ended
        assert len(active) == 9 and {t["health"] for t in active} == {"up"}
    else:  # the new probe answered directly, Prometheus had not scraped it yet: it does within seconds
        assert verified.startswith("directly: every new target answered")
        deadline = time.monotonic() + 10
        while len(prometheus(project, "probe_success == 1")) < 3:
            assert time.monotonic() < deadline, "Prometheus never probed the domain the stage checked directly"
            time.sleep(0.2)

    project.domains_file.write_text(text[:docs] + text[docs:].replace("monitoring: true", "monitoring: false")
                                  + UNPROBED)
    removed = run_deploy(project)  # a probe removed only: a change, checked at once, not waited out
    assert removed.success
    assert removed.metadata["monitoring"]["verified"] != "unchanged: Prometheus's view checked"

    runtime = deployed_runtime(project)
    victim = next(p for p in runtime.supervisor.processes() if p["group"].startswith("svc_backend-api"))
    runtime.supervisor.rpc.stopProcess(f"{victim['group']}:{victim['name']}", True)
    deadline = time.monotonic() + 30
    while not prometheus(project, 'up{job="services"} == 0'):
        assert time.monotonic() < deadline, "Prometheus never saw the stopped replica down"
        time.sleep(0.5)
    (down,) = prometheus(project, 'up{job="services"} == 0')
    assert down["metric"]["instance"] == f"127.0.0.1:{API_PORT}"

    assert main(["infra", "status", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["monitoring"]["prometheus_url"] == f"http://127.0.0.1:{runtime.target.prometheus_port}"


def test_an_exporter_restarted_with_a_new_command_is_probed_through_at_once(project: Project):
    """Prometheus, which keeps running, reloads the configuration that points at the exporter."""
    assert run_deploy(project).success
    old = deployed_runtime(project).target.blackbox_port
    project.domains_file.write_text(project.domains_file.read_text().replace(
        f"blackbox_port: {old}", f"blackbox_port: {free_port()}"))

    stages = []
    assert run_deploy(project, on_stage=stages.append).success, stages
    assert "configuration reloaded" in next(s.detail for s in stages if s.stage == "monitoring")
    assert {r["value"][1] for r in prometheus(project, "probe_success")} == {"1"}


def test_a_configuration_promtool_refuses_replaces_nothing(project: Project, monkeypatch):
    assert run_deploy(project).success
    runtime = deployed_runtime(project)
    monitoring = target_of(load_config(project.domains_file).config).monitoring(project, runtime.frontend)
    current = (runtime.supervisor.root / "monitoring" / "prometheus.yml").read_text()
    monkeypatch.setattr(Monitoring, "prometheus_config", lambda self, *args: {"scrape_configs": [{"job": "x"}]})
    services = {name: spec.output() for name, spec in runtime.deployed_services().items()}
    with pytest.raises(MonitoringError, match="refused the generated configuration"):
        monitoring.apply(services, runtime.deployed_domains())
    assert (runtime.supervisor.root / "monitoring" / "prometheus.yml").read_text() == current


def test_missing_binaries_name_the_package(project: Project, monkeypatch, tmp_path: Path):
    runtime = deployed_runtime(project)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MonitoringError, match=re.escape("install the Debian package prometheus")):
        Monitoring(runtime.supervisor, runtime.frontend, load_config(project.domains_file).config, {}).apply({}, {})


def test_a_service_without_metrics_is_probed_only_and_prometheus_keeps_its_settings(project: Project):
    """`metrics: null`: a plain web server that serves no /metrics passes the stage; retention and
    the scrape interval reach Prometheus."""
    text = project.domains_file.read_text()
    website = re.search(r"  website:\n(    .*\n)+", text).group()
    plain = ("  website:\n    command: [python3, -m, http.server, --bind, 127.0.0.1, \"{port}\"]\n"
             f"    port: {WEB_PORT}\n    health: {{path: /}}\n    metrics: null\n")
    text = text.replace(website, plain).replace("\ndomains:", "\nprometheus: {retention: 2h, scrape_interval: 3s}\n"
                                                               "\ndomains:", 1)
    project.domains_file.write_text(text)

    stages = []
    assert run_deploy(project, on_stage=stages.append).success, stages
    assert next(s.detail for s in stages if s.stage == "monitoring") == "7/7 targets up, 5 rules loaded"
    scraped = {t["labels"].get("service") for t in prometheus_api(project, "targets")["activeTargets"]}
    assert "backend-api" in scraped and "website" not in scraped
    probes = {r["metric"]["domain"] for r in prometheus(project, "probe_success")}
    assert probes == {"api.allthingslinux.org", "www.allthingslinux.org", "docs.allthingslinux.org"}
    assert prometheus_api(project, "status/flags")["storage.tsdb.retention.time"] == "2h"
    assert "scrape_interval: 3s" in prometheus_api(project, "status/config")["yaml"]


def test_alertmanager_reloads_a_changed_configuration_and_keeps_the_running_one_when_amtool_refuses(
        project: Project, monkeypatch):
    assert run_deploy(project).success
    runtime = deployed_runtime(project)
    pid = runtime.supervisor.rpc.getProcessInfo("alertmanager")["pid"]
    project.domains_file.write_text(project.domains_file.read_text().replace(
        "\ndomains:", "\nalerting: {repeat_interval: 2h}\n\ndomains:", 1))
    stages = []
    assert run_deploy(project, on_stage=stages.append).success, stages
    assert "configuration reloaded" in next(s.detail for s in stages if s.stage == "monitoring")
    manager = Alertmanager.of(project)
    status = requests.get(f"{manager.url}/api/v2/status", auth=manager.auth, timeout=5).json()
    assert "repeat_interval: 2h" in status["config"]["original"]
    assert runtime.supervisor.rpc.getProcessInfo("alertmanager")["pid"] == pid  # reloaded, not restarted
    assert requests.get(f"{manager.url}/api/v2/status", timeout=5).status_code == 401  # no password, no answer

    current = (runtime.supervisor.root / "monitoring" / "alertmanager.yml").read_text()
    monkeypatch.setattr(alertmanager, "configuration", lambda *args: {"route": {"receiver": "nobody"}})
    monitoring = target_of(load_config(project.domains_file).config).monitoring(project, runtime.frontend)
    services = {name: spec.output() for name, spec in runtime.deployed_services().items()}
    with pytest.raises(MonitoringError, match="amtool refused the generated configuration"):
        monitoring.apply(services, runtime.deployed_domains())
    assert (runtime.supervisor.root / "monitoring" / "alertmanager.yml").read_text() == current
