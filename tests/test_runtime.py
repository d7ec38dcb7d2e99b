"""The local runtime with real supervisord, Caddy and sample services on loopback:
deploy, do nothing twice, roll and scale without losing a request, survive a killed
replica, gate a broken release, remove what the file no longer declares, stop and restore."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import time
from pathlib import Path

import pytest
import requests
from dagster import AssetKey, DagsterInstance, materialize

from atl_pipeline.cli import main
from atl_pipeline.definitions import loaded
from atl_pipeline.defs.runtime_stages import health_check
from atl_pipeline.health import PROBES
from atl_pipeline.orchestration.runner import run_deploy, stages_until
from atl_pipeline.orchestration.stage import APPROVE_DESTROY_TAG
from atl_pipeline.project import Project
from atl_pipeline.runtime.local import deployed_runtime
from atl_pipeline.timings import Timings
from tests.dagster_helpers import stage_resources
from tests.ports import service_ports
from tests.runtime_helpers import (
    Load,
    process_limits,
    program_pid,
    replica_pids,
    through_lb,
    wait_until_served,
)

pytestmark = pytest.mark.slow  # supervisord, Caddy and replicas

API, WWW, DOCS = "api.allthingslinux.org", "www.allthingslinux.org", "docs.allthingslinux.org"
ASSETS = list(loaded().assets)


@pytest.fixture
def stack(project: Project):
    """The example project deployed (the `project` fixture stops it afterwards)."""
    stages = []
    assert run_deploy(project, on_stage=stages.append, stages=stages_until("service_deployment")).success, stages
    for domain in (API, WWW, DOCS):
        wait_until_served(project, domain)
    return project


def edit(project: Project, old: str, new: str) -> None:
    text = project.domains_file.read_text()
    assert old in text
    project.domains_file.write_text(text.replace(old, new))


def reload_count(project: Project) -> float:
    metrics = requests.get(f"{deployed_runtime(project).lb.admin_url}/metrics", timeout=5).text
    line = next(line for line in metrics.splitlines() if line.startswith("caddy_config_last_reload_success_timestamp"))
    return float(line.split()[-1])


def test_services_answer_through_caddy_over_verified_tls(stack: Project, capsys):
    answer = json.loads(through_lb(stack, API).body)
    assert answer["service"] == "backend-api" and answer["replica"] in {"0", "1", "2"}
    assert json.loads(through_lb(stack, DOCS).body)["service"] == "website"
    redirect = through_lb(stack, API, "/x?y=1", tls=False)
    lb = deployed_runtime(stack).lb
    assert (redirect.status, redirect.error) == (308, "")
    assert through_lb(stack, "unknown.example.org", tls=False).status == 404

    assert main(["infra", "status", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["load_balancer"] == {"address": "127.0.0.1", "http_port": lb.http_port,
                                       "https_port": lb.https_port, "ca_cert": str(lb.ca_cert), "running": True}
    assert [(d["name"], d["service"], d["ssl"], d["healthy"]) for d in report["domains"]] == [
        (API, "backend-api", True, True), (DOCS, "website", True, True), (WWW, "website", True, True)]
    assert report["domains"][0]["url"] == f"https://{API}:{lb.https_port}/"
    api = next(s for s in report["services"] if s["name"] == "backend-api")
    first = service_ports()[0]
    assert [(r["port"], r["state"]) for r in api["replicas"]] == [(first + r, "RUNNING") for r in range(3)]
    assert process_limits(api["replicas"][0]["pid"]) == (512 * 2**20, 5)
    metrics = requests.get(f"{lb.admin_url}/metrics", timeout=5).text
    assert f'host="{API}"' in metrics
    sample = requests.get(f"http://127.0.0.1:{first}/metrics", timeout=5).text
    assert 'atl_sample_info{service="backend-api"' in sample


def test_the_private_parts_are_private(stack: Project):
    runtime = deployed_runtime(stack)
    assert stat.S_IMODE(runtime.supervisor.root.stat().st_mode) == 0o700
    assert stat.S_IMODE(runtime.supervisor.socket.stat().st_mode) == 0o700
    config = requests.get(f"{runtime.lb.admin_url}/config/", timeout=5).json()
    assert config["admin"]["listen"].startswith("127.0.0.1:")
    assert {listen for server in config["apps"]["http"]["servers"].values() for listen in server["listen"]} == {
        f"127.0.0.1:{runtime.lb.http_port}", f"127.0.0.1:{runtime.lb.https_port}"}


def test_a_second_deploy_touches_nothing(stack: Project):
    pids, reloaded = replica_pids(stack), reload_count(stack)
    stages = []
    assert run_deploy(stack, on_stage=stages.append, stages=stages_until("service_deployment")).success
    assert next(s for s in stages if s.stage == "service_deployment").detail == "2 unchanged"
    assert replica_pids(stack) == pids
    assert reload_count(stack) == reloaded


def test_rolling_a_release_and_scaling_lose_no_request(stack: Project, tmp_path: Path):
    before = json.loads(through_lb(stack, API).body)["release"]
    website = replica_pids(stack)["website"]
    with Load(stack, API, tmp_path / "load.json") as load:
        edit(stack, "backend-api:1.0.0", "backend-api:1.0.1")
        assert run_deploy(stack, stages=stages_until("service_deployment")).success
        edit(stack, "replicas: 3", "replicas: 2")
        assert run_deploy(stack, stages=stages_until("service_deployment")).success
    result = load.result
    assert result["failed"] == 0, result["failures"]
    assert result["ok"] > 20
    assert before in result["releases"] and len(result["releases"]) == 2
    assert replica_pids(stack)["website"] == website
    assert len(replica_pids(stack)["backend-api"]) == 2


def test_requests_held_open_across_a_roll_all_finish(stack: Project, tmp_path: Path):
    """Eight clients on keep-alive connections post forms, each held open 400 ms: the old release
    is retired while requests to it are in flight, and every one is answered (a POST is never
    sent twice, so Caddy's retries cannot hide one that a replica dropped)."""
    before = json.loads(through_lb(stack, API).body)["release"]
    with Load(stack, API, tmp_path / "held.json", "held", "8", "400") as load:
        edit(stack, "backend-api:1.0.0", "backend-api:1.0.1")
        assert run_deploy(stack, stages=stages_until("service_deployment")).success
    after = json.loads(through_lb(stack, API).body)["release"]
    result = load.result
    assert result["failed"] == 0, result["failures"]
    assert set(result["releases"]) == {before, after} and before != after and result["ok"] > 8


def test_a_killed_replica_is_restarted_while_the_load_balancer_serves(stack: Project, tmp_path: Path):
    victim = replica_pids(stack)["backend-api"][0]
    with Load(stack, API, tmp_path / "load.json") as load:
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while victim in replica_pids(stack)["backend-api"] or 0 in replica_pids(stack)["backend-api"]:
            assert time.monotonic() < deadline, "supervisord did not restart the replica"
            time.sleep(0.1)
    assert load.result["failed"] == 0, load.result["failures"]
    assert len(replica_pids(stack)["backend-api"]) == 3


def test_a_release_that_never_gets_healthy_is_not_switched_to(stack: Project):
    serving = json.loads(through_lb(stack, API).body)["release"]
    api = '[python3, -m, atl_pipeline.sample_service, --port, "{port}"]\n    image: ghcr.io/allthingslinux/backend-api'
    edit(stack, api, api.replace('"{port}"]', '"{port}", --unhealthy-for-host, 127.0.0.1]'))
    stages = []

    assert not run_deploy(stack, on_stage=stages.append, timings=Timings(health_timeout=3.0)).success

    failed = next(s for s in stages if s.stage == "service_deployment")
    assert failed.status == "failed" and "did not answer /healthz with 2xx within 3 s" in failed.detail
    assert "What ran before still serves" in failed.detail
    assert json.loads(through_lb(stack, API).body)["release"] == serving
    assert [g.release for g in deployed_runtime(stack).groups()["backend-api"]] == [serving]


def test_removed_domains_leave_the_load_balancer_and_unused_services_stop(stack: Project):
    text = stack.domains_file.read_text()
    stack.domains_file.write_text(text[:text.index('  - name: "docs')])
    website = replica_pids(stack)["website"]
    assert run_deploy(stack, tags={APPROVE_DESTROY_TAG: "true"}, stages=stages_until("service_deployment")).success
    assert not through_lb(stack, DOCS).ok  # no route, no certificate
    assert through_lb(stack, DOCS, tls=False).status == 404
    assert replica_pids(stack)["website"] == website

    text = stack.domains_file.read_text()
    stack.domains_file.write_text(text[:text.index('  - name: "www')])
    stages = []
    assert run_deploy(stack, on_stage=stages.append, tags={APPROVE_DESTROY_TAG: "true"},
                      stages=stages_until("service_deployment")).success
    assert "1 stopped" in next(s for s in stages if s.stage == "service_deployment").detail
    assert "website" not in replica_pids(stack)
    assert through_lb(stack, WWW, tls=False).status == 404


def test_down_stops_everything_and_up_restores_it(stack: Project, capsys):
    assert main(["infra", "down"]) == 0
    assert not deployed_runtime(stack).supervisor.is_running()
    assert through_lb(stack, API).status is None
    assert main(["infra", "status"]) == 1
    capsys.readouterr()

    assert main(["infra", "up"]) == 0
    wait_until_served(stack, API)
    assert main(["infra", "status"]) == 0


def test_services_and_caddy_do_not_inherit_the_pipelines_environment(project: Project, monkeypatch):
    monkeypatch.setenv("ATL_CANARY_SECRET", "canary-3f9a")
    assert run_deploy(project, stages=stages_until("service_deployment")).success
    caddy = program_pid(project, "caddy")
    for pid in [caddy, *replica_pids(project)["backend-api"]]:
        environment = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"canary-3f9a" not in environment and b"PATH=" in environment


def test_a_new_admin_port_moves_caddys_admin_endpoint(stack: Project):
    from tests.ports import free_port

    old = deployed_runtime(stack).lb.admin_port
    new = free_port()
    edit(stack, f"admin_port: {old}", f"admin_port: {new}")
    assert run_deploy(stack, stages=stages_until("service_deployment")).success
    assert deployed_runtime(stack).lb.admin_port == new
    assert requests.get(f"http://127.0.0.1:{new}/config/", timeout=5).ok
    wait_until_served(stack, API)


def test_the_health_check_probes_every_domain_through_caddy(stack: Project):
    stages = []
    assert run_deploy(stack, on_stage=stages.append).success
    health = next(s for s in stages if s.stage == "health_check")
    assert re.fullmatch(r"3/3 domains healthy; average \d+\.\d ms, error rate 0\.00%; 3 unchanged, probed once",
                        health.detail)
    instance = DagsterInstance.from_config(str(stack.dagster_home))
    metadata = instance.get_latest_materialization_event(AssetKey("health_check")).asset_materialization.metadata
    assert f"| {API} | backend-api | ok |" in metadata["domains"].value
    assert "| average response | < 100 ms |" in metadata["slo"].value


def test_a_domain_the_deployment_left_as_it_was_is_probed_once_and_still_checked(stack: Project):
    def probes() -> dict[str, int]:  # per domain, from the metadata's table
        event = DagsterInstance.from_config(str(stack.dagster_home)).get_latest_materialization_event(
            AssetKey("health_check"))
        rows = event.asset_materialization.metadata["domains"].value.splitlines()[2:]
        return {cells[1].strip(): int(cells[4]) for cells in (row.split("|") for row in rows)}

    EXCEPTION = "policy: {exceptions: [{policy: production_monitoring, reason: the test needs a domain unprobed}]}\n"

    def stop_website() -> None:
        runtime = deployed_runtime(stack)
        runtime.supervisor.rpc.stopProcessGroup(next(iter(runtime.groups()["website"])).name, True)

    assert run_deploy(stack).success  # nothing changed since the fixture's deployment
    assert probes() == {API: 1, WWW: 1, DOCS: 1}
    stop_website()
    result = materialize(ASSETS, selection=[health_check], instance=DagsterInstance.from_config(
        str(stack.dagster_home)), raise_on_error=False, resources=stage_resources(stack, settle_seconds=1.0))
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed and f"{WWW}: " in evaluation.description  # one probe, still a check

    assert run_deploy(stack).success  # the website's replicas started again: its domains are measured
    assert probes() == {API: 1, WWW: PROBES, DOCS: PROBES}
    text = stack.domains_file.read_text()  # the first domain's monitoring switched off: its output changes
    stack.domains_file.write_text(text.replace("monitoring: true", "monitoring: false", 1) + EXCEPTION)
    assert run_deploy(stack).success
    assert probes() == {API: PROBES, WWW: 1, DOCS: 1}


def test_a_release_broken_for_its_site_is_rolled_back_by_the_health_check(stack: Project):
    serving = json.loads(through_lb(stack, API).body)["release"]
    api = '[python3, -m, atl_pipeline.sample_service, --port, "{port}"]\n    image: ghcr.io/allthingslinux/backend-api'
    edit(stack, api, api.replace('"{port}"]', f'"{{port}}", --unhealthy-for-host, {API}]'))
    stages = []

    assert not run_deploy(stack, on_stage=stages.append).success

    assert next(s for s in stages if s.stage == "service_deployment").detail == "1 rolled, 1 unchanged"
    failed = next(s for s in stages if s.stage == "health_check")
    assert failed.status == "failed" and f"{API}: HTTP 503" in failed.detail
    assert "rolled back backend-api to the previous release" in failed.detail
    assert json.loads(through_lb(stack, API).body)["release"] == serving
    assert [g.release for g in deployed_runtime(stack).groups()["backend-api"]] == [serving]


def test_a_failing_domain_whose_service_did_not_change_is_reported_not_rolled_back(stack: Project):
    runtime = deployed_runtime(stack)
    website = next(g for g in runtime.groups()["website"])
    runtime.supervisor.rpc.stopProcessGroup(website.name, True)

    result = materialize(ASSETS, selection=[health_check], instance=DagsterInstance.from_config(
        str(stack.dagster_home)), raise_on_error=False, resources=stage_resources(stack, settle_seconds=1.0))

    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert f"{DOCS}: " in evaluation.description and f"{WWW}: " in evaluation.description
    assert API not in evaluation.description
    assert [g.name for g in deployed_runtime(stack).groups()["website"]] == [website.name]  # nothing rolled back
