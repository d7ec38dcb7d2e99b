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

import ipaddress
import json
import re
import time
from pathlib import Path

from atl_pipeline.config import Config
from atl_pipeline.files import replace_file
from atl_pipeline.project import Project
from atl_pipeline.runtime.compose import compose_file, placement, replicas_on, router_config
from atl_pipeline.runtime.http import Frontend
from atl_pipeline.runtime.rolling import DRAIN_SECONDS, SLOT_PORTS, DeployError, Runtime, ServiceOutcome, as_output
from atl_pipeline.runtime.ssh import RemoteError, RemoteHost, Unreachable
from atl_pipeline.terraform.hcloud import resource_name

WAIT_SECONDS = 120  # for each server's new replicas to pass their health checks
BOOT_SECONDS = 600  # for a new server's sshd, then for cloud-init to install Docker
# cloud-init's exit status 1 is a failure, 2 a warning; a server without cloud-init has nothing to wait for
CLOUD_INIT = "! command -v cloud-init >/dev/null || { cloud-init status --wait >/dev/null; [ $? -ne 1 ]; }"

RECORD = Path("runtime") / "hcloud-deployed.json"  # under the project's .atl/
KNOWN_HOSTS = Path("ssh") / "known_hosts"  # the servers' pinned host keys, under .atl/

Release = tuple[str, dict, int]  # service, its Terraform output, slot


class HcloudRuntime(Runtime):
    def __init__(self, project: Project, name: str, hosts: dict[str, RemoteHost], servers: dict[str, dict],
                 load_balancer: dict):
        self.project, self.name, self.hosts, self.servers = project, name, hosts, servers
        self.load_balancer = load_balancer
        self.deployed_file = project.state_dir / RECORD

    @classmethod
    def of(cls, project: Project, config: Config, outputs: dict | None = None) -> HcloudRuntime:
        """The runtime over the servers and load balancer of Terraform's outputs; without outputs, those
        the last deployment reached. Each server keeps its files in `<remote_dir>/<server name>`."""
        target = config.target
        if outputs is None:
            record = project.state_dir / RECORD
            if not record.exists():
                raise DeployError("nothing was deployed to hcloud servers yet: run a deploy (`atl infra up`) first")
            outputs = json.loads(record.read_text())
        servers, load_balancer = _checked(outputs)
        (project.state_dir / KNOWN_HOSTS).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        identity = None
        if target.ssh_identity:
            identity = project.root / Path(target.ssh_identity).expanduser()
            if not identity.is_file():
                raise DeployError(f"target.ssh_identity: {identity} does not exist on this machine")
        hosts = {name: RemoteHost(spec["ipv4"], f"{target.remote_dir}/{name}", identity,
                                  project.state_dir / KNOWN_HOSTS, port=target.ssh_port)
                 for name, spec in servers.items()}
        return cls(project, resource_name(config), hosts, servers, load_balancer)

    @property
    def frontend(self) -> Frontend:
        """The load balancer's public IPv4 address (none after a destroy), serving Let's Encrypt
        certificates: what this machine trusts."""
        return Frontend(self.load_balancer.get("ipv4", ""), 80, 443)

    def deploy(self, services: dict[str, dict], domains: dict[str, dict]) -> list[ServiceOutcome]:
        """Make what the servers run match Terraform's `services` and `domains` outputs."""
        with self.project.lock():
            return self._deploy(services, domains)

    def _deploy(self, services: dict[str, dict], domains: dict[str, dict]) -> list[ServiceOutcome]:
        record = self.deployed()
        if not self.servers:
            return self._forget(services, record)
        old = [(name, as_output(spec), spec["slot"]) for name, spec in record.get("services", {}).items()]
        new, actions = self._next_groups(services, record.get("services", {}))
        kept = {(service, slot) for service, _, slot in new}
        rolling = new + [group for group in old if (group[0], group[2]) not in kept]
        router = self._router(services, domains)
        changed = [group for group in new if actions[group[0]] != "unchanged"]
        fresh = self._await_new_servers(record.get("servers", {}))
        reached: list[str] = []
        try:
            for server in sorted(self.servers):
                reached.append(server)
                self._up(server, rolling, router)
                self._gate(server, new if server in fresh else changed)
        except RemoteError as error:
            raise DeployError(f"server {reached[-1]}: {error}\n"
                              + self._put_back(reached, old, record.get("domains", {}))) from None
        self._record(services, domains, new, record)
        if len(rolling) > len(new):
            self._retire_old(new, router)
        return [ServiceOutcome(name, spec["release"], actions[name], self._replicas(spec, slot))
                for name, spec, slot in new] + [
            ServiceOutcome(name, spec["release"], "stopped") for name, spec, _ in old if name not in services]

    def _await_new_servers(self, recorded: dict[str, dict]) -> set[str]:
        """The servers no deployment reached at their address, once each answers SSH and cloud-init
        has finished (it installs Docker). Their address's old host key, if any, was another server's."""
        fresh = {name for name, spec in self.servers.items() if recorded.get(name, {}).get("ipv4") != spec["ipv4"]}
        for server in sorted(fresh):
            host = self.hosts[server]
            host.forget_host_key()
            try:
                host.wait_until_reachable(BOOT_SECONDS)
            except Unreachable as error:
                raise DeployError(f"new server {server} did not answer SSH within {BOOT_SECONDS} s (is this "
                                  f"machine's address in target.ssh_from?): {error}\nNothing was changed on any "
                                  "server.") from None
            try:
                host.run(["sh", "-c", CLOUD_INIT])
            except RemoteError as error:
                raise DeployError(f"new server {server}: cloud-init failed (`cloud-init status --long` there says "
                                  f"why): {error}\nNothing was changed on any server.") from None
        return fresh

    def _retire_old(self, new: list[Release], router: dict[str, str]) -> None:
        time.sleep(DRAIN_SECONDS)  # the routers' health checks see the new replicas before the old ones go
        try:
            for server in sorted(self.servers):
                self._up(server, new, router)
        except RemoteError as error:
            raise DeployError(f"the new releases serve on every server, but removing the old replicas failed: "
                              f"{error}\nThe next run removes them.") from None

    def _forget(self, services: dict[str, dict], record: dict) -> list[ServiceOutcome]:
        """After a destroy: the servers are gone, and so is what the pipeline knew of them."""
        if services:
            raise DeployError("Terraform's outputs name services but no servers: the hcloud templates must "
                              "output `servers`")
        self.deployed_file.unlink(missing_ok=True)
        (self.project.state_dir / KNOWN_HOSTS).unlink(missing_ok=True)
        return [ServiceOutcome(name, spec["release"], "stopped") for name, spec in record.get("services", {}).items()]

    @staticmethod
    def _next_groups(services: dict[str, dict], running: dict[str, dict]) -> tuple[list[Release], dict[str, str]]:
        groups, actions = [], {}
        for name, spec in services.items():
            current = running.get(name)
            if current and as_output(current) == spec:
                groups.append((name, spec, current["slot"]))
                actions[name] = "unchanged"
            else:
                groups.append((name, spec, 1 - current["slot"] if current else 0))
                actions[name] = "rolled" if current else "started"
        return groups, actions

    def _router(self, services: dict[str, dict], domains: dict[str, dict]) -> dict[str, str]:
        """Each server's router.json."""
        return {server: json.dumps(router_config(services, domains, self.servers, self.servers[server]["private_ip"]),
                                   indent=2, sort_keys=True) for server in self.servers}

    def _up(self, server: str, groups: list[Release], routers: dict[str, str]) -> None:
        host = self.hosts[server]
        host.put("router.json", routers[server])
        host.put("compose.yml", compose_file(self.name, server, self.servers, groups, routers[server]))
        host.run([*self._compose(host), "up", "--detach", "--remove-orphans"])

    def _gate(self, server: str, changed: list[Release]) -> None:
        """Until the new replicas on `server` pass their health checks (only they: an old one that
        fails its own must not block the release that replaces it)."""
        names = [entry[0] for entry in replicas_on(server, self.servers, changed)]
        if names:
            host = self.hosts[server]
            host.run([*self._compose(host), "up", "--detach", "--wait", "--wait-timeout", str(WAIT_SECONDS),
                      *names])

    @staticmethod
    def _compose(host: RemoteHost) -> list[str]:
        return ["docker", "compose", "--project-directory", host.root, "-f", f"{host.root}/compose.yml"]

    def _put_back(self, servers: list[str], old: list[Release], domains: dict[str, dict]) -> str:
        """Every server given back its previous Compose file; says how that went."""
        router = self._router({name: spec for name, spec, _ in old}, domains)
        failed = []
        for server in servers:
            try:
                self._up(server, old, router)
            except RemoteError as error:
                failed.append(f"server {server} could not be put back: {error}")
        return "\n".join(failed) or "Every server is back on what it ran before, which still serves."

    def _replicas(self, spec: dict, slot: int) -> tuple[dict, ...]:
        on = placement(spec["replicas"], list(self.servers))
        return tuple({"server": server, "port": spec[SLOT_PORTS[slot]][r]} for server in sorted(on) for r in on[server])

    def _record(self, services: dict, domains: dict, new: list[Release], record: dict) -> None:
        state = {"servers": self.servers, "load_balancer": self.load_balancer, "domains": domains,
                 "services": {name: {**spec, "slot": slot} for name, spec, slot in new},
                 "previous": record.get("services", {})}
        self.deployed_file.parent.mkdir(parents=True, exist_ok=True)
        replace_file(self.deployed_file, json.dumps(state, indent=2))


def _checked(outputs: dict) -> tuple[dict[str, dict], dict]:
    """The `servers` and `load_balancer` outputs, refused unless each name is a server name and
    each address an IP address: they become paths and ssh's arguments."""
    servers, load_balancer = outputs.get("servers") or {}, outputs.get("load_balancer") or {}
    for name, spec in servers.items():
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", name):
            raise DeployError(f"Terraform's output servers names a server {name[:80]!r}: not a server name")
        for key in ("ipv4", "private_ip"):
            _address(f"servers.{name}.{key}", spec.get(key))
    if servers:
        _address("load_balancer.ipv4", load_balancer.get("ipv4"))
    return servers, load_balancer


def _address(where: str, value: object) -> None:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        raise DeployError(f"Terraform's output {where} is not an IP address: {str(value)[:80]!r}") from None
