"""The hcloud runtime over a real SSH connection: a real sshd on loopback, two "servers" at two
of its addresses, each with its own folder, and a stand-in `docker` that records its calls
(no container engine runs here). Also the rendering of each server's Compose file and
router, and the deployment stage on this target."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from dagster import build_asset_context

from atl_pipeline.cli import main
from atl_pipeline.config import Config, LoadedConfig, load_config
from atl_pipeline.defs.runtime_stages import service_deployment
from atl_pipeline.monitoring.prometheus import group_targets
from atl_pipeline.orchestration.resources import ProjectResource, TargetResource
from atl_pipeline.project import Project
from atl_pipeline.runtime.compose import Project as ComposeProject
from atl_pipeline.runtime.compose import compose_file, placement, router_config
from atl_pipeline.runtime.hcloud import HcloudRuntime
from atl_pipeline.runtime.http import Frontend
from atl_pipeline.runtime.rolling import DeployError
from atl_pipeline.runtime.ssh import RemoteError, Unreachable
from atl_pipeline.targets import target_of
from atl_pipeline.targets.hcloud import server_names
from atl_pipeline.targets.outputs import DomainOutput, OutputError, Outputs, ServerOutput, ServiceOutput
from atl_pipeline.terraform.render import render
from atl_pipeline.terraform.stages import TerraformApply
from atl_pipeline.timings import DEFAULT_TIMINGS, Timings
from atl_pipeline.validation import validate
from tests.conftest import REPO
from tests.ports import free_port
from tests.sshd import Sshd, new_key
from tests.test_hcloud import CHAT, GROUPS, grouped_text

pytestmark = pytest.mark.slow  # a real sshd, ssh and Caddy (three pure tests ride along)

EXAMPLE = REPO / "examples" / "hcloud" / "domains.yml"
RAW_SERVERS = {"node-1": {"private_ip": "10.0.1.2", "ipv4": "127.0.0.1"},  # as Terraform's `servers` output
               "node-2": {"private_ip": "10.0.1.3", "ipv4": "127.0.0.2"}}
LOAD_BALANCER = {"ipv4": "192.0.2.10", "ipv6": "2001:db8::10", "private_ip": "10.0.1.5"}
RAW = {"servers": RAW_SERVERS, "load_balancer": LOAD_BALANCER}
OUTPUTS = Outputs.parse(RAW)
WWW, MAIL = "www.example.org", "mail.example.org"  # a proxied and an unproxied domain of the router test
SERVERS = OUTPUTS.servers


def outputs(path: Path = EXAMPLE) -> tuple[dict[str, ServiceOutput], dict[str, DomainOutput]]:
    """Terraform's services and domains outputs for the file at `path`, as the apply gives them."""
    parsed = Outputs.parse(raw_outputs(path))
    return parsed.services, parsed.domains


def raw_outputs(path: Path = EXAMPLE) -> dict:
    """What `terraform output -json` gives for the file at `path` on these servers."""
    inputs = render(load_config(path).config, REPO / "terraform_templates").inputs
    services = {name: {**spec, "ports": [spec["port"] + r for r in range(spec["replicas"])],
                       "standby_ports": [spec["standby_port"] + r for r in range(spec["replicas"])]}
                for name, spec in inputs["services"].items()}
    domains = {name: {**domain, "proxied": inputs["hcloud"]["records"][name]["proxied"]}
               for name, domain in inputs["domains"].items()}
    return {**RAW, "services": services, "domains": domains}


NO_DRAIN = Timings(drain_seconds=0)


@pytest.fixture
def timings(request) -> Timings:
    """The drain gives the routers' health checks time to find new replicas: no router runs here,
    so only the test marked `drain` waits it out."""
    return DEFAULT_TIMINGS if "drain" in request.keywords else NO_DRAIN


@pytest.fixture
def sshd(tmp_path: Path):
    server = Sshd(tmp_path / "sshd").start()
    yield server
    server.stop()


@pytest.fixture
def loaded(sshd: Sshd, tmp_path: Path, write) -> LoadedConfig:
    """The example, its servers reached through the test's sshd, each keeping its files in
    `servers/<name>` under the test's folder."""
    settings = (f"  ssh_port: {sshd.port}\n  ssh_identity: {sshd.identity}\n"
                f"  remote_dir: {tmp_path / 'servers'}\n")
    return load_config(write(EXAMPLE.read_text().replace("  kind: hcloud\n", "  kind: hcloud\n" + settings),
                             "hcloud.yml"))


@pytest.fixture
def config(loaded: LoadedConfig) -> Config:
    return loaded.config


@pytest.fixture
def runtime(project: Project, config: Config, timings: Timings) -> HcloudRuntime:
    return HcloudRuntime.of(project, config, OUTPUTS, timings)


def server_of(call: dict) -> str:
    """The server a recorded docker call worked on: the folder of its Compose file."""
    return call["argv"][call["argv"].index("-f") + 1].split("/")[-2]


def waited_for(call: dict) -> list[str]:
    """The replicas a gate (`up --wait`) call waits for."""
    return call["argv"][call["argv"].index("--wait-timeout") + 2:]


def with_identity(config: Config, identity: Path) -> Config:
    return config.model_copy(update={"target": config.target.model_copy(update={"ssh_identity": str(identity)})})


def on_server(tmp_path: Path, server: str) -> dict:
    return yaml.safe_load((tmp_path / "servers" / server / "compose.yml").read_text())


def test_replicas_are_spread_over_the_servers_in_order():
    assert placement(3, ["node-2", "node-1"]) == {"node-1": [0, 2], "node-2": [1]}
    assert placement(1, list(SERVERS)) == {"node-1": [0], "node-2": []}


def test_a_servers_compose_file_and_router():
    services, domains = outputs()
    router = router_config(services, domains, SERVERS, "10.0.1.2", "10.0.1.5", ("203.0.113.0/24",))
    api = services["backend-api"]
    compose = yaml.safe_load(compose_file(ComposeProject("atl"), "node-1", SERVERS, [("backend-api", api, 0)],
                                          json.dumps(router)))

    assert list(compose["services"]) == ["router", f"backend-api-{api.release}-s0-0", f"backend-api-{api.release}-s0-2"]
    replica = compose["services"][f"backend-api-{api.release}-s0-2"]
    assert replica["image"] == "ghcr.io/allthingslinux/backend-api:1.0.0"
    assert replica["ports"] == ["10.0.1.2:8102:8102"]  # the private address only
    assert replica["deploy"]["resources"]["limits"] == {"cpus": "0.5", "memory": str(512 * 2**20)}
    assert replica["healthcheck"]["test"] == ["CMD", "curl", "-fsS", "http://127.0.0.1:8102/healthz"]
    assert replica["restart"] == "unless-stopped" and replica["logging"]["options"]["max-file"] == "5"

    server = router["apps"]["http"]["servers"]["router"]
    assert server["listen"] == ["10.0.1.2:80"]
    ready, guard, redirect, proxy = server["routes"][:4]
    assert ready["match"] == [{"path": ["/.atl/ready"]}]
    assert guard["match"][0]["host"] == sorted(name for name, domain in domains.items() if domain.proxied)
    assert server["trusted_proxies"]["ranges"] == ["10.0.1.5/32"] and server["trusted_proxies_strict"] == 1
    assert redirect["match"][0]["header"] == {"X-Forwarded-Proto": ["http"]}
    upstreams = {u["dial"] for u in proxy["handle"][0]["upstreams"]}
    assert upstreams == {"10.0.1.2:8100", "10.0.1.2:8102", "10.0.1.3:8101",  # ports, then the standby slot
                         "10.0.1.2:8150", "10.0.1.2:8152", "10.0.1.3:8151"}


def test_an_image_on_its_own_port_is_published_to_it_and_checked_by_its_own_program():
    """`container_port`: every replica listens on the image's port inside its container and is published
    at its own; `health.command` runs instead of curl (an image without it, a database)."""
    api = outputs()[0]["backend-api"].model_copy(update={
        "container_port": 80, "health_command": ["pg_isready", "-p", "{port}"], "command": ["serve", "{port}"]})
    compose = yaml.safe_load(compose_file(ComposeProject("atl"), "node-1", SERVERS, [("backend-api", api, 1)], "{}"))

    replica = compose["services"][f"backend-api-{api.release}-s1-2"]
    assert replica["ports"] == ["10.0.1.2:8152:80"]
    assert replica["environment"]["PORT"] == "80" and replica["command"] == ["serve", "80"]
    assert replica["healthcheck"]["test"] == ["CMD", "pg_isready", "-p", "80"]


def test_a_first_deploy_ships_each_server_its_files_and_gates_it(runtime: HcloudRuntime, sshd: Sshd,
                                                                tmp_path: Path):
    services, domains = outputs()
    outcomes = runtime.deploy(services, domains)

    assert {(o.name, o.action) for o in outcomes} == {("backend-api", "started"), ("website", "started")}
    calls = sshd.calls()
    release = services["backend-api"].release
    assert [(server_of(call), "--wait" in call["argv"]) for call in calls] == [
        ("node-1", False), ("node-1", True), ("node-2", False), ("node-2", True)]  # no old replica to remove
    assert calls[0]["argv"][:2] == ["compose", "--project-directory"] and "--remove-orphans" in calls[0]["argv"]
    assert waited_for(calls[1]) == [  # the replicas on node-1
        f"backend-api-{release}-s0-0", f"backend-api-{release}-s0-2",
        f"website-{services['website'].release}-s0-0"]
    assert f"backend-api-{release}-s0-1" in on_server(tmp_path, "node-2")["services"]
    router = json.loads((tmp_path / "servers/node-2/router.json").read_text())
    assert router["apps"]["http"]["servers"]["router"]["listen"] == ["10.0.1.3:80"]


@pytest.mark.drain
def test_a_new_release_rolls_beside_the_old_one_then_replaces_it(runtime: HcloudRuntime, sshd: Sshd, write):
    services, domains = outputs()
    runtime.deploy(services, domains)
    old = services["backend-api"].release
    services, domains = outputs(write(EXAMPLE.read_text().replace("backend-api:1.0.0", "backend-api:1.0.1")))
    new = services["backend-api"].release
    calls = len(sshd.calls())

    outcomes = runtime.deploy(services, domains)

    assert {(o.name, o.action) for o in outcomes} == {("backend-api", "rolled"), ("website", "unchanged")}
    rolling, gate, _, _, final = sshd.calls()[calls:calls + 5]
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

    after = [("--wait" in call["argv"], server_of(call)) for call in sshd.calls()[calls:]]
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


def test_the_deployment_stage_ships_the_servers_of_terraforms_outputs(project: Project, loaded: LoadedConfig,
                                                                      sshd: Sshd, tmp_path: Path):
    applied = TerraformApply(Outputs.parse(raw_outputs()), serial=3, applied=True)

    result = service_deployment(build_asset_context(), validated_config=validate(loaded), terraform_apply=applied,
                                project=ProjectResource(root=str(project.root)), target=TargetResource(drain_seconds=0))

    assert result.value.frontend == Frontend("192.0.2.10", 80, 443)  # the CAs this machine trusts
    assert result.metadata["summary"].value == "2 started"
    assert "node-1:8100, node-1:8102, node-2:8101" in result.metadata["services"].value
    for server in SERVERS:
        assert on_server(tmp_path, server)["name"] == "allthingslinux-production"
    for address in ("127.0.0.1", "127.0.0.2"):  # each server's host key, pinned in the project's own file
        subprocess.run(["ssh-keygen", "-F", f"[{address}]:{sshd.port}", "-f",
                        str(project.state_dir / "ssh" / "known_hosts")], check=True, capture_output=True)


def test_a_roll_back_finds_the_servers_in_the_last_deployments_record(project: Project, config: Config,
                                                                      runtime: HcloudRuntime, tmp_path: Path, write):
    """The health check rolls back from the record, with no Terraform outputs at hand."""
    with pytest.raises(DeployError, match="run a deploy"):
        target_of(config, NO_DRAIN).runtime(project)
    runtime.deploy(*outputs())
    first = on_server(tmp_path, "node-1")
    services, domains = outputs(write(EXAMPLE.read_text().replace("backend-api:1.0.0", "backend-api:1.0.1")))
    runtime.deploy(services, domains)
    bad = {"backend-api": services["backend-api"].release}

    outcomes = target_of(config, NO_DRAIN).runtime(project).roll_back(bad)

    assert {(o.name, o.action) for o in outcomes} == {("backend-api", "rolled"), ("website", "unchanged")}
    images = {entry["image"] for entry in on_server(tmp_path, "node-1")["services"].values()}
    assert images == {entry["image"] for entry in first["services"].values()}
    assert runtime.deployed()["services"]["backend-api"]["image"].endswith(":1.0.0")
    # a second health check rolls nothing forward
    assert target_of(config, NO_DRAIN).runtime(project).roll_back(bad) == []
    assert runtime.deployed()["services"]["backend-api"]["image"].endswith(":1.0.0")


def test_a_changed_host_key_is_refused_with_the_command_that_forgets_the_old_one(runtime: HcloudRuntime,
                                                                                  sshd: Sshd, project: Project):
    runtime.deploy(*outputs())
    sshd.replace_host_key()
    with pytest.raises(DeployError, match=re.escape(f"ssh-keygen -R '[127.0.0.1]:{sshd.port}' -f "
                                                    f"{project.state_dir / 'ssh' / 'known_hosts'}")):
        runtime.deploy(*outputs())


def test_hcloud_is_monitored_through_its_load_balancer_from_this_machine(project: Project, config: Config,
                                                                         runtime: HcloudRuntime):
    services, domains = outputs()
    monitoring = target_of(config, NO_DRAIN).monitoring(project, runtime.frontend)
    groups = monitoring.target_groups(services, domains)
    blackbox = monitoring.blackbox_config(domains)

    assert group_targets(groups) == {(f"blackbox-{name}", f"https://192.0.2.10:443{services[d.service].health_path}")
                                     for name, d in domains.items() if d.monitoring}  # no replica: they are private
    api = blackbox["modules"]["api.allthingslinux.org"]["http"]
    assert api["headers"] == {"Host": "api.allthingslinux.org"}
    assert api["tls_config"] == {"server_name": "api.allthingslinux.org"}  # verified with the system's CAs
    monitoring.check(domains)  # promtool and the blackbox exporter accept both configurations


def test_a_new_server_is_awaited_until_it_answers_ssh(runtime: HcloudRuntime, sshd: Sshd):
    sshd.stop()  # the servers are still booting
    booted = threading.Timer(1, sshd.launch)  # after the first attempt, before the next, 2 s later
    booted.start()
    outcomes = runtime.deploy(*outputs())
    booted.join()
    assert {(o.name, o.action) for o in outcomes} == {("backend-api", "started"), ("website", "started")}


def test_a_replaced_server_is_awaited_and_every_replica_on_it_gated(project: Project, config: Config,
                                                                    runtime: HcloudRuntime, sshd: Sshd):
    services, domains = outputs()
    runtime.deploy(services, domains)
    calls = len(sshd.calls())
    replaced = {**RAW_SERVERS, "node-2": {**RAW_SERVERS["node-2"], "ipv4": "127.0.0.3"}}  # the same name, a new one

    outcomes = HcloudRuntime.of(project, config, Outputs.parse({**RAW, "servers": replaced}), NO_DRAIN).deploy(
        services, domains)

    assert {o.action for o in outcomes} == {"unchanged"}
    gates = [(server_of(call), waited_for(call)) for call in sshd.calls()[calls:] if "--wait" in call["argv"]]
    assert gates == [("node-2", [f"backend-api-{services['backend-api'].release}-s0-1",
                                 f"website-{services['website'].release}-s0-1"])]  # node-1 is as it was


def test_after_a_destroy_the_record_and_the_pinned_host_keys_are_forgotten(project: Project, config: Config,
                                                                           runtime: HcloudRuntime):
    runtime.deploy(*outputs())
    destroyed = HcloudRuntime.of(project, config, Outputs(), NO_DRAIN)  # Terraform's outputs after `atl infra destroy`

    outcomes = destroyed.deploy({}, {})

    assert {(o.name, o.action) for o in outcomes} == {("backend-api", "stopped"), ("website", "stopped")}
    assert not runtime.deployed_file.exists()
    assert not (project.state_dir / "ssh" / "known_hosts").exists()  # held only this project's servers' keys


def test_a_key_the_servers_refuse_fails_at_once(project: Project, config: Config, sshd: Sshd, tmp_path: Path):
    stranger = new_key(tmp_path / "stranger_key")
    runtime = HcloudRuntime.of(project, with_identity(config, stranger), OUTPUTS, NO_DRAIN)
    with pytest.raises(RemoteError, match="Permission denied") as raised:  # not awaited as a booting server
        runtime.deploy(*outputs())
    assert not isinstance(raised.value, Unreachable)


@pytest.mark.parametrize(("outputs_", "message"), [
    ({"servers": {"node-1": {"ipv4": "-oProxyCommand=touch pwned", "private_ip": "10.0.1.2"}},
      "load_balancer": LOAD_BALANCER}, "servers.node-1.ipv4: Input is not a valid IPv4 address"),
    ({"servers": {"-oProxyCommand=x": RAW_SERVERS["node-1"]}, "load_balancer": LOAD_BALANCER}, "servers."),
])
def test_outputs_of_another_shape_are_refused_before_any_connection(project: Project, config: Config, sshd: Sshd,
                                                                    outputs_: dict, message: str):
    with pytest.raises(OutputError, match=re.escape(f"Terraform's output {message}")):
        HcloudRuntime.of(project, config, Outputs.parse(outputs_), NO_DRAIN)
    assert sshd.calls() == [] and not list(project.root.rglob("pwned"))


def test_servers_without_a_load_balancer_are_refused(project: Project, config: Config, sshd: Sshd):
    with pytest.raises(DeployError, match="no load_balancer"):
        HcloudRuntime.of(project, config, Outputs.parse({"servers": RAW_SERVERS}), NO_DRAIN)


def test_a_missing_identity_file_is_named(project: Project, config: Config, tmp_path: Path):
    with pytest.raises(DeployError, match=re.escape(f"target.ssh_identity: {tmp_path / 'nowhere'} does not exist")):
        HcloudRuntime.of(project, with_identity(config, tmp_path / "nowhere"), OUTPUTS, NO_DRAIN)


def test_drift_on_the_servers_is_found_and_healed(runtime: HcloudRuntime, sshd: Sshd):
    """A replica's container stopped by hand, and a container of another project, on the servers."""
    services, domains = outputs()
    runtime.deploy(services, domains)
    assert runtime.drift(services, domains) == []
    on_node_1 = sshd.containers("127.0.0.1")
    stopped = next(c for c in on_node_1 if "backend-api" in c["Names"])
    stopped.update(State="exited", Status="Exited (137) 3 seconds ago")
    sshd.set_containers("127.0.0.1", on_node_1)
    stranger = {"Names": "miner", "Image": "x:1", "State": "running", "Status": "Up 1 hour",
                "Labels": "com.docker.compose.project=someone-else,com.docker.compose.service=miner"}
    sshd.set_containers("127.0.0.2", [*sshd.containers("127.0.0.2"), stranger])

    service = stopped["Labels"].split("com.docker.compose.service=")[1]
    assert runtime.drift(services, domains) == [
        f"server node-1: {service} is exited",
        "server node-2: container miner of project someone-else is not the pipeline's"]

    runtime.deploy(services, domains)  # what healing does
    assert runtime.drift(services, domains) == [
        "server node-2: container miner of project someone-else is not the pipeline's"]


def test_drift_sees_a_router_edited_by_hand_and_a_server_gone(runtime: HcloudRuntime, sshd: Sshd, tmp_path: Path):
    services, domains = outputs()
    runtime.deploy(services, domains)
    (tmp_path / "servers" / "node-1" / "router.json").write_text("{}")
    assert runtime.drift(services, domains) == [
        "server node-1: the router's configuration differs from the declared domains"]
    sshd.stop()
    assert [line.split(" (")[0] for line in runtime.drift(services, domains)] == [
        "server node-1: cannot be reached", "server node-2: cannot be reached"]


def test_status_down_and_doctor_on_the_servers(project: Project, loaded: LoadedConfig, runtime: HcloudRuntime,
                                               sshd: Sshd, monkeypatch, capsys):
    target = target_of(loaded.config)
    runtime.deploy(*outputs())
    project.domains_file.write_text(loaded.source.text)
    assert main(["infra", "status"]) == 1  # the load balancer's documentation address answers no one
    printed = capsys.readouterr().out
    assert re.search(r"^node-1 +127\.0\.0\.1 +yes$", printed, re.M), printed
    assert re.search(r"^backend-api +\w+ +node-1/\S+:running \(healthy\) node-1/", printed, re.M), printed

    report = target.status(project)
    assert report["servers"] == [{"name": "node-1", "address": "127.0.0.1", "reachable": True},
                                 {"name": "node-2", "address": "127.0.0.2", "reachable": True}]
    api = next(s for s in report["services"] if s["name"] == "backend-api")
    assert [(r["server"], r["state"]) for r in api["replicas"]] == [
        ("node-1", "running (healthy)"), ("node-1", "running (healthy)"), ("node-2", "running (healthy)")]
    assert {d["name"]: d["healthy"] for d in report["domains"]} == {
        "api.allthingslinux.org": False, "docs.allthingslinux.org": False, "www.allthingslinux.org": False}

    assert target.stop(project)  # the Compose projects down; the servers and the record stay
    assert sshd.containers("127.0.0.1") == sshd.containers("127.0.0.2") == []
    assert [c["argv"][-2:] for c in sshd.calls()[-2:]] == [["down", "--remove-orphans"]] * 2
    runtime.deploy(*outputs())
    assert len(sshd.containers("127.0.0.1")) == 4  # the router and three replicas

    monkeypatch.delenv("HCLOUD_TOKEN", raising=False)
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "set")
    checks = {check.name: check for check in target.doctor(project)}
    assert not checks["secret env:HCLOUD_TOKEN"].ok and checks["secret env:CLOUDFLARE_API_TOKEN"].ok
    assert checks["ssh key"].ok and checks["server node-1"].ok and checks["server node-2"].ok
    sshd.stop()
    assert not {check.name: check for check in target.doctor(project)}["server node-1"].ok


@pytest.mark.parametrize(("peer", "forwarded", "host", "status"), [
    ("127.0.0.2", "203.0.113.9, 172.70.1.2", WWW, 200),  # the visitor, then the Cloudflare edge the LB saw
    ("127.0.0.2", "172.70.1.2, 203.0.113.9", WWW, 403),  # a Cloudflare address the client wrote itself
    ("127.0.0.2", "203.0.113.9", WWW, 403),  # straight to the load balancer's address
    ("127.0.0.2", None, WWW, 403),
    ("127.0.0.2", "198.51.100.7", WWW, 200),  # the machines that deploy (target.ssh_from)
    ("127.0.0.1", "172.70.1.2", WWW, 403),  # a header from anyone but the load balancer counts for nothing
    ("127.0.0.2", "203.0.113.9", MAIL, 200),  # never proxied: open to all
], ids=["through cloudflare", "forged cloudflare", "direct", "no header", "operator", "untrusted peer", "unproxied"])
def test_the_router_serves_proxied_domains_to_cloudflare_only(router: int, peer, forwarded, host, status):
    headers = {"Host": host, **({"X-Forwarded-For": forwarded} if forwarded else {})}
    connection = http.client.HTTPConnection("127.0.0.1", router, timeout=10, source_address=(peer, 0))
    connection.request("GET", "/", headers=headers)
    assert connection.getresponse().status == status



@pytest.fixture(scope="module")
def router(tmp_path_factory):
    """A real Caddy running the router's configuration in front of a sample service, with
    127.0.0.2 as the load balancer."""
    root = tmp_path_factory.mktemp("router")
    port, backend = free_port(), free_port()
    service = ServiceOutput(cpu_millicores=100, health_path="/healthz", memory_bytes=2**20, port=backend,
                            release="r1", replicas=1, standby_port=backend + 50, ports=[backend],
                            standby_ports=[backend + 50])
    domains = {name: DomainOutput(cpu_millicores=100, memory_bytes=2**20, monitoring=False, replicas=1,
                                  service="web", ssl=False, url=f"http://{name}/", proxied=name == WWW)
               for name in (WWW, MAIL)}
    servers = {"node-1": ServerOutput(ipv4="127.0.0.1", private_ip="127.0.0.1")}
    config = router_config({"web": service}, domains, servers, "127.0.0.1", "127.0.0.2", ("198.51.100.0/24",))
    config["apps"]["http"]["servers"]["router"]["listen"] = [f"127.0.0.1:{port}"]
    (root / "router.json").write_text(json.dumps(config))
    processes = [subprocess.Popen([sys.executable, "-m", "atl_pipeline.sample_service", "--port", str(backend)]),
                 subprocess.Popen([str(Path(sys.executable).parent / "caddy"), "run", "--config",
                                   str(root / "router.json")], cwd=root, env={"HOME": str(root)},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 30
        while not through(port, MAIL):  # the health check has found the replica
            assert time.monotonic() < deadline, "the router did not serve"
            time.sleep(0.2)
        yield port
    finally:
        for process in processes:
            process.kill()
            process.wait()


def through(port: int, host: str) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2, source_address=("127.0.0.2", 0))
        connection.request("GET", "/", headers={"Host": host})
        return connection.getresponse().status == 200
    except OSError:
        return False


GROUPED_SERVERS = {"allthingslinux-production-web-1": {"ipv4": "127.0.0.1", "private_ip": "10.0.1.2", "group": "web"},
                   "allthingslinux-production-web-2": {"ipv4": "127.0.0.2", "private_ip": "10.0.1.3", "group": "web"},
                   "allthingslinux-production-chat-1": {"ipv4": "127.0.0.3", "private_ip": "10.0.1.10",
                                                        "group": "chat"}}


def test_server_groups_tcp_ports_and_volumes_on_the_servers(project: Project, loaded: LoadedConfig, sshd: Sshd,
                                                             tmp_path: Path, write):
    """Each group's servers run its services only; a TCP service publishes its ports and keeps its data
    in a volume, and rolls by stopping its old release first."""
    groups = GROUPS.replace("    db: {count: 1}\n", "")
    text = grouped_text(loaded.source.text, groups, CHAT.replace("servers: db", "servers: chat"))
    config = load_config(write(text, "grouped.yml")).config
    assert validate(LoadedConfig(config, loaded.source)).findings == ()
    raw = {**raw_outputs(write(text, "grouped.yml")), "servers": GROUPED_SERVERS}
    runtime = HcloudRuntime.of(project, config, Outputs.parse(raw), NO_DRAIN)
    services, domains = runtime_outputs(raw)

    runtime.deploy(services, domains)

    chat = on_server(tmp_path, "allthingslinux-production-chat-1")
    release = services["chat"].release
    assert {name.rsplit("-", 3)[0] for name in chat["services"]} == {"router", "chat", "postgres"}
    assert chat["services"][f"chat-{release}-s0-0"]["ports"] == [
        "10.0.1.10:8300:8300", "10.0.1.10:5222:5222", "10.0.1.10:5269:5269"]
    assert chat["services"][f"chat-{release}-s0-0"]["volumes"] == ["chat-data:/var/lib/prosody"]
    assert chat["volumes"] == {"chat-data": {}, "postgres-data": {}}
    assert chat["networks"] == {"default": {"ipam": {"config": [{"subnet": "172.23.0.0/16"}]}}}
    web = on_server(tmp_path, "allthingslinux-production-web-1")
    assert {name.rsplit("-", 3)[0] for name in web["services"]} == {"router", "backend-api", "website"}
    assert "networks" not in web and web["services"]["router"]["logging"]["options"] == {"max-size": "10m",
                                                                                         "max-file": "5"}

    rolled = raw_outputs(write(text.replace("prosody:0.12.4", "prosody:0.12.5"), "grouped.yml"))
    calls = len(sshd.calls())
    runtime.deploy(*runtime_outputs({**rolled, "servers": GROUPED_SERVERS}))
    first_on_chat = next(c for c in sshd.calls()[calls:] if server_of(c) == "allthingslinux-production-chat-1")
    assert f"chat-{release}-s0-0" not in first_on_chat["compose"]  # stopped as the new release starts


def runtime_outputs(raw: dict) -> tuple[dict[str, ServiceOutput], dict[str, DomainOutput]]:
    parsed = Outputs.parse(raw)
    return parsed.services, parsed.domains


def test_an_imported_configuration_deploys_to_each_server_group(project: Project, sshd: Sshd, tmp_path: Path,
                                                                 write):
    """All Things Linux's own file, imported (tests/golden/imported/domains.yml): every server of every
    group gets the services placed on its group and no other, behind its router, and passes its gate. An image
    with a fixed port is published to it, and an image without curl is checked by its own program."""
    settings = (f"  ssh_port: {sshd.port}\n  ssh_identity: {sshd.identity}\n"
                f"  remote_dir: {tmp_path / 'servers'}\n")
    text = (REPO / "tests" / "golden" / "imported" / "domains.yml").read_text()
    path = write(text.replace("  kind: hcloud\n", "  kind: hcloud\n" + settings), "imported.yml")
    loaded = load_config(path)
    assert validate(loaded).findings == ()
    config = loaded.config
    names = sorted(server_names(config).items())
    servers = {name: {"ipv4": f"127.0.0.{n}", "group": group,
                      "private_ip": str(config.target.groups[group].private_ip or f"10.0.1.{100 + n}")}
               for n, (name, group) in enumerate(names, start=1)}
    raw = {**raw_outputs(path), "servers": servers}
    runtime = HcloudRuntime.of(project, config, Outputs.parse(raw), NO_DRAIN)

    outcomes = runtime.deploy(*runtime_outputs(raw))

    workloads = config.workloads()
    assert {(outcome.name, outcome.action) for outcome in outcomes} == {(name, "started") for name in workloads}
    for name, group in names:
        running = {entry.rsplit("-", 3)[0] for entry in on_server(tmp_path, name)["services"]} - {"router"}
        group_servers = [server for server, of in names if of == group]
        placed = {service for service, workload in workloads.items() if config.services[service].servers == group
                  and placement(workload.replicas, group_servers)[name]}
        assert running == placed, name
    assert all((sshd.bin / f"containers-127.0.0.{n}.json").exists() for n in range(1, len(names) + 1))

    deployed = {key.rsplit("-", 3)[0]: (server, entry) for server, _ in names
                for key, entry in on_server(tmp_path, server)["services"].items()}
    server, vaultwarden = deployed["vaultwarden"]
    assert vaultwarden["ports"] == [f"{servers[server]['private_ip']}:8800:80"]  # Vaultwarden's own port, 80
    assert vaultwarden["healthcheck"]["test"] == ["CMD", "curl", "-fsS", "http://127.0.0.1:80/alive"]
    assert deployed["postgresql"][1]["healthcheck"]["test"] == [
        "CMD", "pg_isready", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres"]
