"""The hcloud runtime over a real SSH connection: a real sshd on loopback, two "servers" as two
folders behind it, and a stand-in `docker` that records its calls (no container engine
runs here). Also the rendering of each server's Compose file and router."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from atl_pipeline.config import load_config
from atl_pipeline.project import Project
from atl_pipeline.runtime.compose import compose_file, placement, router_config
from atl_pipeline.runtime.hcloud import HcloudRuntime
from atl_pipeline.runtime.local import DeployError
from atl_pipeline.terraform.render import render
from tests.conftest import REPO
from tests.sshd import Sshd

EXAMPLE = REPO / "examples" / "hcloud" / "domains.yml"
SERVERS = {"node-1": {"private_ip": "10.0.1.2", "ipv4": "192.0.2.1"},
           "node-2": {"private_ip": "10.0.1.3", "ipv4": "192.0.2.2"}}


def outputs(path: Path = EXAMPLE) -> tuple[dict, dict]:
    """Terraform's services and domains outputs for the file at `path`, as the apply gives them."""
    inputs = render(load_config(path).config, REPO / "terraform_templates").inputs
    services = {name: {**spec, "ports": [spec["port"] + r for r in range(spec["replicas"])],
                       "standby_ports": [spec["standby_port"] + r for r in range(spec["replicas"])]}
                for name, spec in inputs["services"].items()}
    return services, inputs["domains"]


@pytest.fixture
def sshd(tmp_path: Path):
    server = Sshd(tmp_path / "sshd").start()
    yield server
    server.stop()


@pytest.fixture
def runtime(project: Project, sshd: Sshd, tmp_path: Path) -> HcloudRuntime:
    hosts = {name: sshd.host(tmp_path / "servers" / name) for name in SERVERS}
    return HcloudRuntime(project, "allthingslinux-production", hosts, SERVERS)


def on_server(tmp_path: Path, server: str) -> dict:
    return yaml.safe_load((tmp_path / "servers" / server / "compose.yml").read_text())


def test_replicas_are_spread_over_the_servers_in_order():
    assert placement(3, ["node-2", "node-1"]) == {"node-1": [0, 2], "node-2": [1]}
    assert placement(1, list(SERVERS)) == {"node-1": [0], "node-2": []}


def test_a_servers_compose_file_and_router():
    services, domains = outputs()
    router = router_config(services, domains, SERVERS, "10.0.1.2")
    api = services["backend-api"]
    compose = yaml.safe_load(compose_file("atl", "node-1", SERVERS, [("backend-api", api, 0)], json.dumps(router)))

    assert list(compose["services"]) == ["router", f"backend-api-{api['release']}-s0-0",
                                         f"backend-api-{api['release']}-s0-2"]
    replica = compose["services"][f"backend-api-{api['release']}-s0-2"]
    assert replica["image"] == "ghcr.io/allthingslinux/backend-api:1.0.0"
    assert replica["ports"] == ["10.0.1.2:8102:8102"]  # the private address only
    assert replica["deploy"]["resources"]["limits"] == {"cpus": "0.5", "memory": str(512 * 2**20)}
    assert replica["healthcheck"]["test"] == ["CMD", "curl", "-fsS", "http://127.0.0.1:8102/healthz"]
    assert replica["restart"] == "unless-stopped" and replica["logging"]["options"]["max-file"] == "5"

    server = router["apps"]["http"]["servers"]["router"]
    assert server["listen"] == ["10.0.1.2:80"]
    ready, redirect, proxy = server["routes"][:3]
    assert ready["match"] == [{"path": ["/.atl/ready"]}]
    assert redirect["match"][0]["header"] == {"X-Forwarded-Proto": ["http"]}
    upstreams = {u["dial"] for u in proxy["handle"][0]["upstreams"]}
    assert upstreams == {"10.0.1.2:8100", "10.0.1.2:8102", "10.0.1.3:8101",  # ports, then the standby slot
                         "10.0.1.2:8150", "10.0.1.2:8152", "10.0.1.3:8151"}


def test_a_first_deploy_ships_each_server_its_files_and_gates_it(runtime: HcloudRuntime, sshd: Sshd,
                                                                tmp_path: Path):
    services, domains = outputs()
    outcomes = runtime.deploy(services, domains)

    assert {(o.name, o.action) for o in outcomes} == {("backend-api", "started"), ("website", "started")}
    calls = [call["argv"] for call in sshd.calls()]
    release = services["backend-api"]["release"]
    assert [(argv[argv.index("-f") + 1].split("/")[-2], "--wait" in argv) for argv in calls] == [
        ("node-1", False), ("node-1", True), ("node-2", False), ("node-2", True), ("node-1", False),
        ("node-2", False)]
    assert calls[0][:2] == ["compose", "--project-directory"] and "--remove-orphans" in calls[0]
    gate = calls[1]  # only the new replicas on node-1 are waited for
    assert gate[gate.index("--wait-timeout") + 2:] == [
        f"backend-api-{release}-s0-0", f"backend-api-{release}-s0-2",
        f"website-{services['website']['release']}-s0-0"]
    assert f"backend-api-{release}-s0-1" in on_server(tmp_path, "node-2")["services"]
    router = json.loads((tmp_path / "servers/node-2/router.json").read_text())
    assert router["apps"]["http"]["servers"]["router"]["listen"] == ["10.0.1.3:80"]


def test_a_new_release_rolls_beside_the_old_one_then_replaces_it(runtime: HcloudRuntime, sshd: Sshd, write):
    services, domains = outputs()
    runtime.deploy(services, domains)
    old = services["backend-api"]["release"]
    services, domains = outputs(write(EXAMPLE.read_text().replace("backend-api:1.0.0", "backend-api:1.0.1")))
    new = services["backend-api"]["release"]
    calls = len(sshd.calls())

    outcomes = runtime.deploy(services, domains)

    assert {(o.name, o.action) for o in outcomes} == {("backend-api", "rolled"), ("website", "unchanged")}
    rolling, gate, final = sshd.calls()[calls], sshd.calls()[calls + 1], sshd.calls()[calls + 4]
    assert f"backend-api-{old}-s0-0" in rolling["compose"] and f"backend-api-{new}-s1-0" in rolling["compose"]
    assert gate["argv"][-2:] == [f"backend-api-{new}-s1-0", f"backend-api-{new}-s1-2"]  # not the unchanged website
    assert f"backend-api-{old}-s0-0" not in final["compose"] and f"backend-api-{new}-s1-0" in final["compose"]
    assert runtime.deployed()["services"]["backend-api"]["slot"] == 1


def test_a_release_that_fails_the_gate_puts_back_what_ran(runtime: HcloudRuntime, sshd: Sshd, tmp_path: Path,
                                                           write):
    services, domains = outputs()
    runtime.deploy(services, domains)
    before = {name: on_server(tmp_path, name) for name in SERVERS}
    services, domains = outputs(write(EXAMPLE.read_text().replace("backend-api:1.0.0", "backend-api:unhealthy")))
    calls = len(sshd.calls())

    with pytest.raises(DeployError, match="(?s)server node-1: .* container backend-api is unhealthy.*back on what"):
        runtime.deploy(services, domains)

    after = [("--wait" in call["argv"], call["argv"][call["argv"].index("-f") + 1].split("/")[-2])
             for call in sshd.calls()[calls:]]
    assert after == [(False, "node-1"), (True, "node-1"), (False, "node-1")]  # node-2 was never touched
    assert {name: on_server(tmp_path, name) for name in SERVERS} == before
    assert runtime.deployed()["services"]["backend-api"]["image"].endswith(":1.0.0")


def test_arguments_reach_the_remote_program_as_they_are(sshd: Sshd, tmp_path: Path):
    """The remote login shell parses the command line: each argument is quoted for it."""
    host = sshd.host(tmp_path / "server")
    hostile = "$(touch pwned-1) `touch pwned-2`; touch pwned-3 | & > pwned-4 * '\" \\ \n[x]"
    assert host.run(["printf", "%s", hostile]) == hostile
    host.put("file with spaces; $(x)", hostile)
    assert (tmp_path / "server" / "file with spaces; $(x)").read_text() == hostile
    assert not list(tmp_path.rglob("pwned*")) and not list(Path.home().glob("pwned*"))
