"""The hcloud target's runtime: each server's Docker Compose project, shipped and applied over SSH.

It rolls as the local runtime does. A changed service (a new release, or a new replica
count) starts in the other port slot beside the old one, server after server, and each
server's `docker compose up --wait` is the health gate (every new replica's health check
passes). Once all servers pass, the routers find the new replicas, the drain time
passes, and the old replicas are removed. A server that fails the gate puts every
server it had reached back on the old Compose file: what ran before still serves.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from atl_pipeline.config import Config
from atl_pipeline.files import replace_file
from atl_pipeline.project import Project
from atl_pipeline.runtime.compose import compose_file, placement, replicas_on, router_config
from atl_pipeline.runtime.http import Frontend
from atl_pipeline.runtime.rolling import DRAIN_SECONDS, SLOT_PORTS, DeployError, Runtime, ServiceOutcome, as_output
from atl_pipeline.runtime.ssh import RemoteError, RemoteHost
from atl_pipeline.terraform.hcloud import resource_name

WAIT_SECONDS = 120  # for each server's new replicas to pass their health checks
BOOT_SECONDS = 600  # for a new server's sshd, then for cloud-init to install Docker
# cloud-init's exit status 1 is a failure, 2 a warning; a server without cloud-init has nothing to wait for
CLOUD_INIT = "! command -v cloud-init >/dev/null || { cloud-init status --wait >/dev/null; [ $? -ne 1 ]; }"

RECORD = Path("runtime") / "hcloud-deployed.json"  # under the project's .atl/

Group = tuple[str, dict, int]  # service, its Terraform output, slot


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
            outputs = json.loads(record.read_text()) if record.exists() else {}
        servers = outputs.get("servers") or {}
        if not servers:
            raise DeployError("Terraform's outputs name no servers: run a deploy (`atl infra up`) first")
        ssh = project.state_dir / "ssh"
        ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
        identity = Path(target.ssh_identity).expanduser() if target.ssh_identity else None
        hosts = {name: RemoteHost(spec["ipv4"], f"{target.remote_dir}/{name}", identity, ssh / "known_hosts",
                                  port=target.ssh_port) for name, spec in servers.items()}
        return cls(project, resource_name(config), hosts, servers, outputs.get("load_balancer", {}))

    @property
    def frontend(self) -> Frontend:
        """The load balancer's public IPv4 address, serving Let's Encrypt certificates: what this machine trusts."""
        return Frontend(self.load_balancer["ipv4"], 80, 443)

    def deploy(self, services: dict[str, dict], domains: dict[str, dict]) -> list[ServiceOutcome]:
        """Make what the servers run match Terraform's `services` and `domains` outputs."""
        with self.project.lock():
            return self._deploy(services, domains)

    def _deploy(self, services: dict[str, dict], domains: dict[str, dict]) -> list[ServiceOutcome]:
        record = self.deployed()
        old = [(name, as_output(spec), spec["slot"]) for name, spec in record.get("services", {}).items()]
        new, actions = self._next_groups(services, record.get("services", {}))
        kept = {(service, slot) for service, _, slot in new}
        rolling = new + [group for group in old if (group[0], group[2]) not in kept]
        router = self._router(services, domains)
        changed = [group for group in new if actions[group[0]] != "unchanged"]
        self._await_new_servers(record.get("servers", {}))
        reached: list[str] = []
        try:
            for server in sorted(self.servers):
                reached.append(server)
                self._up(server, rolling, router)
                self._gate(server, changed)
        except RemoteError as error:
            raise DeployError(f"server {reached[-1]}: {error}\n"
                              + self._put_back(reached, old, record.get("domains", {}))) from None
        if len(rolling) > len(new):
            time.sleep(DRAIN_SECONDS)  # the routers find the new replicas; requests to the old ones finish
        for server in sorted(self.servers):
            self._up(server, new, router)
        self._record(services, domains, new, record)
        return [ServiceOutcome(name, spec["release"], actions[name], self._replicas(spec, slot))
                for name, spec, slot in new] + [
            ServiceOutcome(name, spec["release"], "stopped") for name, spec, _ in old if name not in services]

    def _await_new_servers(self, known: dict[str, dict]) -> None:
        """Servers no deployment reached yet may still be booting: wait for their SSH, then for
        cloud-init to finish (it installs Docker)."""
        for server in sorted(set(self.servers) - set(known)):
            try:
                self.hosts[server].wait_until_reachable(BOOT_SECONDS)
                self.hosts[server].run(["sh", "-c", CLOUD_INIT])
            except RemoteError as error:
                raise DeployError(f"new server {server} is not ready (`cloud-init status --long` on it says why): "
                                  f"{error}\nNothing was changed on any server.") from None

    @staticmethod
    def _next_groups(services: dict[str, dict], running: dict[str, dict]) -> tuple[list[Group], dict[str, str]]:
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

    def _up(self, server: str, groups: list[Group], routers: dict[str, str]) -> None:
        host = self.hosts[server]
        host.put("router.json", routers[server])
        host.put("compose.yml", compose_file(self.name, server, self.servers, groups, routers[server]))
        host.run([*self._compose(host), "up", "--detach", "--remove-orphans"])

    def _gate(self, server: str, changed: list[Group]) -> None:
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

    def _put_back(self, servers: list[str], old: list[Group], domains: dict[str, dict]) -> str:
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

    def _record(self, services: dict, domains: dict, new: list[Group], record: dict) -> None:
        state = {"servers": self.servers, "load_balancer": self.load_balancer, "domains": domains,
                 "services": {name: {**spec, "slot": slot} for name, spec, slot in new},
                 "previous": record.get("services", {})}
        self.deployed_file.parent.mkdir(parents=True, exist_ok=True)
        replace_file(self.deployed_file, json.dumps(state, indent=2))
