"""Auto-scaling with the real processes: backend-api at `min: 1, max: 4` under bench/load.py's load
(HTTPS through Caddy) is scaled up by the `autoscaler` sensor of a real `dg dev`, without a failed
request, and back down to 1 once the load has stopped for `scale_down_after`; the scaled count is no
drift, each scaling run's deployment shows the bounds and the decision, and the replicas' own CPU reaches
Prometheus for `cpu_per_replica`; with Prometheus down the sensor holds every count and says why."""

from __future__ import annotations

import json
import time

import pytest

from atl_pipeline.cli import main
from atl_pipeline.config import load_config
from atl_pipeline.operations import drift
from atl_pipeline.operations.autoscale import observe
from atl_pipeline.runtime.local import deployed_runtime
from atl_pipeline.targets import target_of
from tests.conftest import copy_project, kill_stack
from tests.dagster_dev import DagsterDev
from tests.runtime_helpers import Load, wait_for

pytestmark = pytest.mark.slow

API = "api.allthingslinux.org"
AUTOSCALE = "    autoscale: {min: 1, max: 4, target: {requests_per_second_per_replica: 5}, scale_down_after: 20s}\n"
TICKS = """
query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) { ... on Sensor {
  sensorState { ticks(limit: 1) { status skipReason } } } } }"""


def replicas(project) -> int:
    return deployed_runtime(project).deployed_services()["backend-api"].replicas


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("autoscaling")
    project = copy_project(root / "project")
    text = project.domains_file.read_text().replace("    health: {path: /healthz}\n",
                                                    "    health: {path: /healthz}\n" + AUTOSCALE, 1)
    text = text.replace("replicas: 3", "replicas: 1", 1).replace('cpu: "500m"', 'cpu: "250m"', 1)  # 4 fit in 2 cores
    text += "policy: {exceptions: [{policy: production_replicas, reason: the test scales from one replica}]}\n"
    project.domains_file.write_text(text.replace("\ndomains:", "\nprometheus: {scrape_interval: 1s}\n\ndomains:", 1))
    dev = DagsterDev.start(project, root / "dg-dev.log", ATL_AUTOSCALE_SECONDS="3")
    try:
        assert dev.wait_for_run({"atl/trigger": "file"})["status"] == "SUCCESS", dev.log.read_text()[-3000:]
        yield project, dev
    finally:
        dev.stop()
        kill_stack(project)


def test_a_service_scales_up_under_load_without_a_failed_request_and_back_down_after(stack, tmp_path, monkeypatch,
                                                                                       capsys, write):
    project, dev = stack
    assert replicas(project) == 1
    started = time.monotonic()
    with Load(project, API, tmp_path / "load.json") as load:
        wait_for("3 replicas or more", lambda: replicas(project) >= 3, timeout=60)
        scaled_up = time.monotonic() - started
        wait_for("4 replicas, the most", lambda: replicas(project) == 4, timeout=60)  # the load is ~20x the target
        dev.wait_for_run({"atl/trigger": "autoscale"})
        runs = dev.runs({"atl/trigger": "autoscale"})
        assert drift.detect(project, target_of(load_config(project.domains_file).config)).runtime == []
        cpu = load_config(write(project.domains_file.read_text().replace(
            "requests_per_second_per_replica: 5", 'cpu_per_replica: "70%"'), "cpu.yml")).config
        prometheus = f"http://127.0.0.1:{cpu.target.prometheus_port}"
        wait_for("the replicas' own CPU in Prometheus",  # the new replicas' first samples may still be missing
                 lambda: observe(prometheus, cpu, {"backend-api": 4}, "10s").get("backend-api", 0) > 0, timeout=30)
        time.sleep(20)  # the same load, steady: no more scaling (no flapping)
        assert [run["runId"] for run in dev.runs({"atl/trigger": "autoscale"})] == [run["runId"] for run in runs]
    assert load.result["failed"] == 0 and load.result["ok"] > 0, load.result
    assert runs and all(run["status"] == "SUCCESS" for run in runs), [dev.failures(run["runId"]) for run in runs]
    tags = {tag["key"]: tag["value"] for tag in runs[-1]["tags"]}
    assert tags["atl/service"] == "backend-api" and tags["atl/autoscale"].startswith("1->")
    assert tags["atl/metric"].startswith("requests_per_second_per_replica")
    table = dev.metadata(runs[-1]["runId"], "service_deployment")["autoscale"]
    assert table.splitlines()[2].startswith(f"| backend-api | 1 to 4 | {tags['atl/autoscale'].split('->')[1]} | 1 -> ")

    stopped = time.monotonic()
    wait_for("back to 1 replica", lambda: replicas(project) == 1, timeout=150)
    assert time.monotonic() - stopped >= 20  # not before the metric stayed low for scale_down_after
    assert scaled_up < 60
    monkeypatch.setenv("ATL_PROJECT_DIR", str(project.root))
    main(["infra", "status", "--json"])
    (api,) = [s for s in json.loads(capsys.readouterr().out)["services"] if s["name"] == "backend-api"]
    assert (api["autoscale"]["min"], api["autoscale"]["max"], api["autoscale"]["last_decision"]["to"]) == (1, 4, 1)


def test_without_prometheus_every_count_holds_and_the_sensor_says_why(stack):
    project, dev = stack
    supervisor = deployed_runtime(project).supervisor
    supervisor.rpc.stopProcess("prometheus", True)
    try:
        selector = {"repositoryLocationName": "atl", "repositoryName": "__repository__", "sensorName": "autoscaler"}

        def skipped() -> str | None:
            (tick,) = dev.graphql(TICKS, selector=selector)["sensorOrError"]["sensorState"]["ticks"]
            reason = tick["skipReason"] or ""
            return reason if "did not answer" in reason else None

        assert "every count holds until it does" in wait_for("the autoscaler's skip", skipped, timeout=30)
    finally:
        supervisor.rpc.startProcess("prometheus", True)
