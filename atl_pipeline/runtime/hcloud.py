"""The hcloud target's runtime: each server's Docker Compose project, shipped and applied over SSH.

It rolls as the local runtime does. A changed service (a new release, or a new replica
count) starts in the other port slot beside the old one, server after server, and each
server's `docker compose up --wait` is the health gate (every new replica's health check
passes). Once all servers pass, the routers find the new replicas, the drain time
passes, and the old replicas are removed. A server that fails the gate puts every
server it had reached back on the old Compose file: what ran before still serves.

A server the last deployment did not reach (new, or replaced: another address under its
name) is awaited first, until SSH answers and cloud-init has installed Docker, and every
replica on it is gated. With no servers in Terraform's outputs (after a destroy), what the
pipeline knew of them is dropped.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from atl_pipeline.config import Config
from atl_pipeline.files import replace_file
from atl_pipeline.project import Project
from atl_pipeline.runtime import http
from atl_pipeline.runtime.compose import Project as ComposeProject
from atl_pipeline.runtime.compose import compose_file, group_servers, placement, replicas_on, router_config
from atl_pipeline.runtime.http import Frontend
from atl_pipeline.runtime.rolling import (
    DeployError,
    Domains,
    Replica,
    Runtime,
    ServiceOutcome,
    Services,
    domains_record,
    record_of,
)
from atl_pipeline.runtime.ssh import RemoteError, RemoteHost, Unreachable
from atl_pipeline.targets.hcloud import resource_name
from atl_pipeline.targets.outputs import OutputError, Outputs, ServerOutput, ServiceOutput
from atl_pipeline.timings import DEFAULT_TIMINGS, Timings

BOOT_SECONDS = 600  # for a new server's sshd, then for cloud-init to install Docker
LOOK_SECONDS = 30  # for a look at a server (status, drift): it is up, or it is reported
# cloud-init's exit status 1 is a failure, 2 a warning; a server without cloud-init has nothing to wait for
CLOUD_INIT = "! command -v cloud-init >/dev/null || { cloud-init status --wait >/dev/null; [ $? -ne 1 ]; }"
PROJECT_LABEL = "com.docker.compose.project"

RECORD = Path("runtime") / "hcloud-deployed.json"  # under the project's .atl/
KNOWN_HOSTS = Path("ssh") / "known_hosts"  # the servers' pinned host keys, under .atl/

Release = tuple[str, ServiceOutput, int]  # service, its Terraform output, slot


class HcloudRuntime(Runtime):
    def __init__(self, project: Project, compose: ComposeProject, hosts: dict[str, RemoteHost], outputs: Outputs,
                 operators: tuple[str, ...] = (), timings: Timings = DEFAULT_TIMINGS):
        self.project, self.compose, self.hosts, self.timings = project, compose, hosts, timings
        self.operators = operators  # the ranges the pipeline reaches the load balancer from
        self.servers: dict[str, ServerOutput] = outputs.servers
        self.load_balancer = outputs.load_balancer
        self.deployed_file = project.state_dir / RECORD

    @classmethod
    def of(cls, project: Project, config: Config, outputs: Outputs | None = None,
           timings: Timings = DEFAULT_TIMINGS) -> HcloudRuntime:
        """The runtime over the servers and load balancer of Terraform's outputs; without outputs, those
        the last deployment reached. Each server keeps its files in `<remote_dir>/<server name>`."""
        target = config.target
        if outputs is None:
            record = project.state_dir / RECORD
            if not record.exists():
                raise DeployError("nothing was deployed to hcloud servers yet: run a deploy (`atl infra up`) first")
            try:
                outputs = Outputs.parse(json.loads(record.read_text()))
            except OutputError as error:
                raise DeployError(f"{record}: {error}") from None
        if outputs.servers and outputs.load_balancer is None:
            raise DeployError("Terraform's outputs name servers but no load_balancer: the hcloud templates must "
                              "output it")
        (project.state_dir / KNOWN_HOSTS).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        identity = None
        if target.ssh_identity:
            identity = project.root / Path(target.ssh_identity).expanduser()
            if not identity.is_file():
                raise DeployError(f"target.ssh_identity: {identity} does not exist on this machine")
        hosts = {name: RemoteHost(str(spec.ipv4), f"{target.remote_dir}/{name}", identity,
                                  project.state_dir / KNOWN_HOSTS, port=target.ssh_port)
                 for name, spec in outputs.servers.items()}
        compose = ComposeProject(resource_name(config), target.docker_logs.max_size, target.docker_logs.max_file,
                                 {name: str(group.docker_subnet) for name, group in target.groups.items()
                                  if group.docker_subnet})
        return cls(project, compose, hosts, outputs, tuple(str(net) for net in target.ssh_from), timings)

    @property
    def frontend(self) -> Frontend:
        """The load balancer's public IPv4 address (none after a destroy), serving Let's Encrypt
        certificates: what this machine trusts."""
        return Frontend(str(self.load_balancer.ipv4) if self.load_balancer else "", 80, 443)

    def deploy(self, services: Services, domains: Domains) -> list[ServiceOutcome]:
        """Make what the servers run match Terraform's `services` and `domains` outputs."""
        with self.project.lock():
            return self._deploy(self.desired(services), domains)

    def _deploy(self, services: Services, domains: Domains) -> list[ServiceOutcome]:
        if not self.servers:
            return self._forget(services)
        recorded = self.deployed_services()
        old = [(name, spec.output(), spec.slot) for name, spec in recorded.items()]
        new, actions = self._next_groups(services, recorded)
        kept = {(service, slot) for service, _, slot in new}
        # an exclusive service's old release goes as its new one starts: they cannot run side by side
        rolling = new + [group for group in old if (group[0], group[2]) not in kept and not group[1].exclusive]
        router = self._router(services, domains)
        changed = [group for group in new if actions[group[0]] != "unchanged"]
        fresh = self._await_new_servers(self.deployed().get("servers", {}))
        reached: list[str] = []
        try:
            for server in sorted(self.servers):
                reached.append(server)
                self._up(server, rolling, router)
                self._gate(server, new if server in fresh else changed)
        except RemoteError as error:
            raise DeployError(f"server {reached[-1]}: {error}\n"
                              + self._put_back(reached, old, self.deployed_domains())) from None
        self._record(domains, new)
        if len(rolling) > len(new):
            self._retire_old(new, router)
        return [ServiceOutcome(name, spec.release, actions[name], self._replicas(spec, slot))
                for name, spec, slot in new] + [
            ServiceOutcome(name, spec.release, "stopped") for name, spec, _ in old if name not in services]

    def _await_new_servers(self, recorded: dict[str, dict]) -> set[str]:
        """The servers no deployment reached at their address, once each answers SSH and cloud-init
        has finished (it installs Docker). Their address's old host key, if any, was another server's."""
        fresh = {name for name, spec in self.servers.items() if recorded.get(name, {}).get("ipv4") != str(spec.ipv4)}
        for server in sorted(fresh):
            host = self.hosts[server]
            host.forget_host_key()
            try:
                host.wait_until_reachable(BOOT_SECONDS)
            except Unreachable as error:
                raise DeployError(f"new server {server} did not answer SSH within {BOOT_SECONDS} s (is this "
                                  f"machine's address in target.ssh_from?): {error}\\nNothing was changed on any "
                                  "server.") from None
            try:
                host.run(["sh", "-c", CLOUD_INIT])
            except RemoteError as error:
                raise DeployError(f"new server {server}: cloud-init failed (`cloud-init status --long` there says "
                                  f"why): {error}\\nNothing was changed on any server.") from None
        return fresh

    def _retire_old(self, new: list[Release], router: dict[str, str]) -> None:
        time.sleep(self.timings.drain_seconds)  # the routers' health checks see the new replicas before the old ones go
        try:
            for server in sorted(self.servers):
                self._up(server, new, router)
        except RemoteError as error:
            raise DeployError(f"the new releases serve on every server, but removing the old replicas failed: "
                              f"{error}\\nThe next run removes them.") from None

    def _forget(self, services: Services) -> list[ServiceOutcome]:
        """After a destroy: the servers are gone, and so is what the pipeline knew of them."""
        if services:
            raise DeployError("Terraform's outputs name services but no servers: the hcloud templates must "
                              "output `servers`")
        recorded = self.deployed_services()
        self.deployed_file.unlink(missing_ok=True)
        (self.project.state_dir / KNOWN_HOSTS).unlink(missing_ok=True)
        return [ServiceOutcome(name, spec.release, "stopped") for name, spec in recorded.items()]

    @staticmethod
    def _next_groups(services: Services, running: dict) -> tuple[list[Release], dict[str, str]]:
        groups, actions = [], {}
        for name, spec in services.items():
            current = running.get(name)
            if current and current.output() == spec:
                groups.append((name, spec, current.slot))
                actions[name] = "unchanged"
            else:
                groups.append((name, spec, 1 - current.slot if current else 0))
                actions[name] = "rolled" if current else "started"
        return groups, actions

    def _router(self, services: Services, domains: Domains) -> dict[str, str]:
        """Each server's router.json."""
        load_balancer = str(self.load_balancer.private_ip)
        return {server: json.dumps(router_config(services, domains, self.servers, str(spec.private_ip), load_balancer,
                                                 self.operators), indent=2, sort_keys=True)
                for server, spec in self.servers.items()}

    def _up(self, server: str, groups: list[Release], routers: dict[str, str]) -> None:
        host = self.hosts[server]
        host.put("router.json", routers[server])
        host.put("compose.yml", compose_file(self.compose, server, self.servers, groups, routers[server]))
        host.run([*self._compose(host), "up", "--detach", "--remove-orphans"])

    def _gate(self, server: str, changed: list[Release]) -> None:
        """Until the new replicas on `server` pass their health checks (only they: an old one that
        fails its own must not block the release that replaces it)."""
        names = [entry[0] for entry in replicas_on(server, self.servers, changed)]
        if names:
            host = self.hosts[server]
            host.run([*self._compose(host), "up", "--detach", "--wait",
                      "--wait-timeout", f"{self.timings.rollout_timeout:g}", *names])

    @staticmethod
    def _compose(host: RemoteHost) -> list[str]:
        return ["docker", "compose", "--project-directory", host.root, "-f", f"{host.root}/compose.yml"]

    def _put_back(self, servers: list[str], old: list[Release], domains: Domains) -> str:
        """Every server given back its previous Compose file; says how that went."""
        router = self._router({name: spec for name, spec, _ in old}, domains)
        failed = []
        for server in servers:
            try:
                self._up(server, old, router)
            except RemoteError as error:
                failed.append(f"server {server} could not be put back: {error}")
        return "\\n".join(failed) or "Every server is back on what it ran before, which still serves."

    def _replicas(self, spec: ServiceOutput, slot: int) -> tuple[Replica, ...]:
        on = placement(spec.replicas, group_servers(self.servers, spec))
        return tuple(Replica(spec.slot_ports(slot)[r], server=server) for server in sorted(on) for r in on[server])

    def _record(self, domains: Domains, new: list[Release]) -> None:
        outputs = Outputs(servers=self.servers, load_balancer=self.load_balancer).as_json()
        state = {**outputs, "domains": domains_record(domains),
                 **record_of(self.deployed(), {name: spec for name, spec, _ in new},
                             {name: slot for name, _, slot in new})}
        self.deployed_file.parent.mkdir(parents=True, exist_ok=True)
        replace_file(self.deployed_file, json.dumps(state, indent=2))

    # looking at what runs

    def containers(self, server: str) -> list[dict]:
        """Every container on the server (`docker ps --all`), as Docker describes it."""
        out = self.hosts[server].run(["docker", "ps", "--all", "--no-trunc", "--format", "{{json .}}"],
                                     timeout=LOOK_SECONDS)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def drift(self, services: Services, domains: Domains) -> list[str]:
        """On each server: the containers Terraform's outputs call for, running (and healthy where they
        have a check), no other, and the router's configuration as declared."""
        if not self.servers:
            return []
        services = self.desired(services)
        groups = [(name, spec, self._slot(name, spec)) for name, spec in services.items()]
        routers = self._router(services, domains)
        with ThreadPoolExecutor(max_workers=len(self.servers)) as pool:
            found = pool.map(lambda server: self._server_drift(server, groups, routers[server]), sorted(self.servers))
        return [line for lines in found for line in lines]

    def _slot(self, name: str, spec: ServiceOutput) -> int:
        recorded = self.deployed_services().get(name)
        return recorded.slot if recorded and recorded.output() == spec else -1

    def _server_drift(self, server: str, groups: list[Release], router: str) -> list[str]:
        try:
            containers = self.containers(server)
            served = self.hosts[server].run(["cat", f"{self.hosts[server].root}/router.json"], timeout=LOOK_SECONDS)
        except RemoteError as error:
            return [f"server {server}: cannot be reached ({error})"]
        expected = {"router"} | {entry[0] for entry in replicas_on(server, self.servers,
                                                                      [g for g in groups if g[2] >= 0])}
        ours = {_labels(c).get("com.docker.compose.service", ""): c for c in containers
                if _labels(c).get(PROJECT_LABEL) == self.compose.name}
        found = [f"server {server}: release {name.split('-s')[0]} is not running" for name, _, slot in groups
                 if slot < 0]
        found += [f"server {server}: {name} is not running" for name in sorted(expected - set(ours))]
        found += [f"server {server}: {name} is {_state(c)}" for name, c in sorted(ours.items())
                  if name in expected and _state(c) not in ("running", "running (healthy)")]
        found += [f"server {server}: {name} runs, but is not declared" for name in sorted(set(ours) - expected)]
        found += [f"server {server}: container {c.get('Names', '?')} of project "
                  f"{_labels(c).get(PROJECT_LABEL) or '(none)'} is not the pipeline's" for c in containers
                  if _labels(c).get(PROJECT_LABEL) != self.compose.name]
        if served.strip() != router.strip():
            found.append(f"server {server}: the router's configuration differs from the declared domains")
        return found

    def status(self) -> dict:
        """The servers (reachable or not), each service's containers on each, and each domain through
        the load balancer."""
        with ThreadPoolExecutor(max_workers=max(1, len(self.servers))) as pool:
            looks = dict(zip(sorted(self.servers), pool.map(self._look, sorted(self.servers)), strict=True))
        services = [{"name": name, "release": spec.release, "replicas": [
            {"server": server, "container": c.get("Names", ""), "state": _state(c)}
            for server, (_, containers) in sorted(looks.items()) for c in containers
            if _labels(c).get(PROJECT_LABEL) == self.compose.name
            and _labels(c).get("com.docker.compose.service", "").startswith(f"{name}-{spec.release}-")]}
            for name, spec in sorted(self.deployed_services().items())]
        domains = sorted(self.deployed_domains().items())
        paths = {name: spec.health_path for name, spec in self.deployed_services().items()}
        frontend = self.frontend
        with ThreadPoolExecutor(max_workers=16) as pool:
            healthy = list(pool.map(lambda item: bool(frontend.address) and http.get(
                (frontend.address, 443 if item[1].ssl else 80), item[0], paths.get(item[1].service, "/"),
                tls=item[1].ssl, timeout=5).ok, domains))
        return {
            "load_balancer": {"address": frontend.address, "http_port": 80, "https_port": 443},
            "servers": [{"name": name, "address": str(self.servers[name].ipv4), "reachable": reachable}
                        for name, (reachable, _) in sorted(looks.items())],
            "domains": [{"name": name, "url": domain.url, "service": domain.service, "ssl": domain.ssl,
                         "healthy": ok} for (name, domain), ok in zip(domains, healthy, strict=True)],
            "services": services,
        }

    def _look(self, server: str) -> tuple[bool, list[dict]]:
        try:
            return True, self.containers(server)
        except RemoteError:
            return False, []

    def reachability(self) -> list[tuple[str, bool, str]]:
        """(server, reachable, what was seen) of each server, for `atl utils doctor`."""
        found = []
        for server in sorted(self.servers):
            try:
                self.hosts[server].run(["true"], timeout=LOOK_SECONDS)
                found.append((server, True, f"{self.servers[server].ipv4}: answers SSH"))
            except RemoteError as error:
                found.append((server, False, f"{self.servers[server].ipv4}: {error}"))
        return found

    def stop(self) -> bool:
        """Each server's Compose project down (the servers keep running); the next deploy brings it up."""
        stopped = False
        for server in sorted(self.servers):
            host = self.hosts[server]
            host.run([*self._compose(host), "down", "--remove-orphans"], timeout=LOOK_SECONDS * 4)
            stopped = True
        return stopped


def _labels(container: dict) -> dict[str, str]:
    """A container's labels: Docker prints them as `key=value,key=value`."""
    text = container.get("Labels") or ""
    return dict(pair.split("=", 1) for pair in text.split(",") if "=" in pair)


def _state(container: dict) -> str:
    """`running`, `running (healthy)`, `running (unhealthy)`, `exited`...: Docker's state and its health."""
    state = container.get("State", "")
    status = container.get("Status", "")
    for health in ("healthy", "unhealthy", "health: starting"):
        if f"({health})" in status:
            return f"{state} ({health.removeprefix('health: ')})"
    return state
