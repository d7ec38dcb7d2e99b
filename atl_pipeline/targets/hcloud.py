"""The production target: Hetzner Cloud servers behind a load balancer, DNS at Cloudflare.

Each server runs its share of the replicas as a Docker Compose project shipped over SSH,
with a Caddy router; the load balancer terminates TLS with a managed certificate, which
Hetzner renews. Server types are chosen here: replicas are spread evenly, so each server
holds ceil(replicas / servers) replicas of every service, plus what the system takes.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from atl_pipeline.config import Config, Domain, LoadedConfig
from atl_pipeline.config.model import PORT_BLOCK, Cloudflare
from atl_pipeline.config.quantity import format_bytes
from atl_pipeline.findings import Finding
from atl_pipeline.project import Project
from atl_pipeline.secrets import SECRET_REF
from atl_pipeline.targets.base import Target
from atl_pipeline.targets.outputs import Outputs

if TYPE_CHECKING:
    from atl_pipeline.doctor import Check
    from atl_pipeline.monitoring.prometheus import Monitoring
    from atl_pipeline.runtime.hcloud import HcloudRuntime
    from atl_pipeline.runtime.http import Frontend

GiB = 2**30
# Hetzner's shared-vCPU x86 types, smallest first: (name, millicores, memory), offered in
# the EU locations. Set `target.server_type` to use any other.
SERVER_TYPES = (("cx23", 2000, 4 * GiB), ("cx33", 4000, 8 * GiB), ("cx43", 8000, 16 * GiB),
                ("cx53", 16000, 32 * GiB))
SYSTEM = (500, 1 * GiB)  # per server: the OS, Docker and the router
SIZED_LOCATIONS = ("fsn1", "nbg1", "hel1")  # where SERVER_TYPES are offered
MAX_SERVER_NAME = 63  # Hetzner's labels and server names
NEVER_PROXIED = {"mail", "smtp", "imap", "pop", "pop3", "mx", "autoconfig", "autodiscover", "ftp", "ssh", "sftp"}
UNPROXIED_TTL = 300  # a proxied record's TTL is Cloudflare's automatic one, 1
RESOURCES = {("hcloud_ssh_key", "operator"), ("hcloud_network", "private"), ("hcloud_network_subnet", "servers"),
             ("hcloud_firewall", "servers"), ("hcloud_server", "node"), ("hcloud_load_balancer", "main"),
             ("hcloud_load_balancer_network", "main"), ("hcloud_load_balancer_target", "servers"),
             ("hcloud_load_balancer_service", "http"), ("hcloud_load_balancer_service", "tcp"),
             ("cloudflare_dns_record", "a"), ("cloudflare_dns_record", "aaaa")}
TLS_RESOURCES = {("hcloud_managed_certificate", "tls"), ("hcloud_load_balancer_service", "https")}
MORE_ZONES = "_zones"  # the suffix of the resources of target.cloudflare.zones, keyed by zone


class Hcloud(Target):
    kind = "hcloud"
    renews_certificates = False  # Hetzner renews its managed certificate; the stage verifies it
    public_names = True

    def rules(self, loaded: LoadedConfig) -> Iterator[Finding]:
        """Each service has an image, each domain is in a Cloudflare zone, the subnet is in the
        network, SSH is open to someone on a port of its own, mail-like names are not proxied, a
        proxied domain has a certificate, and a server type holds a server's share."""
        config, target = self.config, self.config.target
        for name in config.workloads():
            if config.services[name].image is None:
                yield loaded.finding(("services", name), f"service {name!r} has no image; the hcloud target "
                                     "runs services as containers")
        yield from self._placed(loaded)
        yield from self._groups(loaded)
        yield from self._domains(loaded)
        if not target.network.is_private or not target.subnet.subnet_of(target.network):
            yield loaded.finding(("target", "subnet"), f"the subnet {target.subnet} must lie in the private "
                                 f"network {target.network} (RFC 1918)")
        if not target.ssh_from:
            yield loaded.finding(("target", "ssh_from"), "the deployment reaches the servers over SSH, which the "
                                 "firewall closes to every address not in target.ssh_from: list the ranges of the "
                                 "machines that deploy")
        yield from self._ports(loaded)
        if len(name := max(server_names(config), key=len)) > MAX_SERVER_NAME:
            yield loaded.finding(("project",), f"`{name}` names a server on hcloud: keep project, environment and "
                                 f"server group names within {MAX_SERVER_NAME} characters together")
        yield from self._sized(loaded)

    def _placed(self, loaded: LoadedConfig) -> Iterator[Finding]:
        """Each service runs on a group that exists, and a TCP service has a server for each replica
        (a port is published once per server)."""
        groups = self.config.target.groups
        for name, workload in self.config.workloads().items():
            service = self.config.services[name]
            group = service.servers or "default"
            if group not in groups:
                close = difflib.get_close_matches(group, groups, n=1)
                yield loaded.finding(("services", name, "servers") if service.servers else ("services", name),
                                     f"service {name!r} runs on the server group {group!r}, which target."
                                     f"server_groups does not declare" + (f"; did you mean {close[0]!r}?" if close
                                                                          else ""))
            elif service.tcp_ports and workload.replicas > groups[group].count:
                yield loaded.finding(("services", name, "tcp_ports"), f"service {name!r} publishes TCP ports "
                                     f"once per server: {workload.replicas} replicas need as many servers in "
                                     f"group {group!r}, which has {groups[group].count}")

    def _groups(self, loaded: LoadedConfig) -> Iterator[Finding]:
        target = self.config.target
        for name, group in target.server_groups.items():
            where = ("target", "server_groups", name)
            if group.private_ip is not None and (group.count != 1 or group.private_ip not in target.subnet):
                yield loaded.finding((*where, "private_ip"), f"server group {name!r}: a fixed private_ip needs a "
                                     f"group of one server, and an address in target.subnet {target.subnet}")
            if group.docker_subnet is not None and group.docker_subnet.overlaps(target.network):
                yield loaded.finding((*where, "docker_subnet"), f"server group {name!r}: docker_subnet "
                                     f"{group.docker_subnet} overlaps target.network {target.network}, which the "
                                     "servers must reach: choose another range")

    def _domains(self, loaded: LoadedConfig) -> Iterator[Finding]:
        cloudflare = self.config.target.cloudflare
        for index, domain in enumerate(self.config.domains):
            if cloudflare.zone_of(domain.name) is None:
                yield loaded.finding(("domains", index, "name"), f"{domain.name} is not in {_zones_named(cloudflare)}")
            if domain.proxied and never_proxied(domain.name):
                yield loaded.finding(("domains", index, "proxied"), f"{domain.name} must not go through "
                                     "Cloudflare's HTTP proxy (mail and the like): remove `proxied: true`")
            tcp = domain.service in self.config.services and self.config.services[domain.service].tcp_ports
            if tcp and proxied(domain, self.config) and not domain.external:
                yield loaded.finding(("domains", index, "proxied"), f"{domain.name}: its service takes TCP ports, "
                                     "which Cloudflare's HTTP proxy does not pass: set `proxied: false`")
            if not domain.ssl and proxied(domain, self.config):
                yield loaded.finding(("domains", index, "ssl"), f"{domain.name} goes through Cloudflare's proxy, "
                                     "which reaches the load balancer over HTTPS and verifies its certificate (SSL "
                                     "mode Full (strict)); the certificate holds only `ssl: true` domains: set "
                                     "`ssl: true`, or `proxied: false`")

    def _ports(self, loaded: LoadedConfig) -> Iterator[Finding]:
        """One table of every port the servers and the load balancer take (sshd, the routers, each service's
        replica block and TCP ports): each clash is named at its first two places, with how many more share
        it. (Replica blocks that meet each other are validation's `ports_disjoint`.)"""
        named = set()
        for group in port_clashes(port_uses(self.config)):
            wheres = tuple(use.where for use in group)
            if wheres in named or all(use.where[-1:] == ("port",) for use in group):
                continue
            named.add(wheres)
            (first, second, *more), place = group, group[0].place
            together = f"{first.what}, {second.what} and {len(more):,} more" if more else \
                f"{first.what} and {second.what}"
            where = first.place_named() if all(use.place == place for use in group) else "the servers"
            yield from (loaded.finding(use.where, f"{together} take the same port on {where}: choose another")
                        for use in (first, second) if use.where)
        yield from self._private_ips(loaded)

    def _private_ips(self, loaded: LoadedConfig) -> Iterator[Finding]:
        """No two groups share a fixed private_ip, nor does one take the subnet's network or broadcast address."""
        target, taken = self.config.target, {}
        reserved = {target.subnet.network_address: "network", target.subnet.broadcast_address: "broadcast"}
        for name, group in target.server_groups.items():
            if group.private_ip is None:
                continue
            where = ("target", "server_groups", name, "private_ip")
            if group.private_ip in reserved:
                yield loaded.finding(where, f"server group {name!r}: {group.private_ip} is target.subnet's "
                                     f"{reserved[group.private_ip]} address: choose another")
            if (owner := taken.setdefault(group.private_ip, name)) != name:
                for group_name in (owner, name):
                    yield loaded.finding(("target", "server_groups", group_name, "private_ip"), f"server groups "
                                         f"{owner!r} and {name!r} both have private_ip {group.private_ip}")

    def _sized(self, loaded: LoadedConfig) -> Iterator[Finding]:
        """Each group without a type is in a location the known types are offered in, and one fits."""
        target = self.config.target
        for name, group in target.groups.items():
            if group.type is not None:
                continue
            named = bool(target.server_groups)  # else the one group `default`, set by servers and server_type
            where = ("target", "server_groups", name) if named else ("target",)
            set_type = f"set the type of server group {name!r}" if named else "set target.server_type"
            if (group.location or target.location) not in SIZED_LOCATIONS:
                yield loaded.finding(where, f"{set_type}: the types sized automatically "
                                     f"({', '.join(t for t, _, _ in SERVER_TYPES)}) are offered in "
                                     f"{', '.join(SIZED_LOCATIONS)} only")
            elif fitting_server_type(self.config, name) is None:
                millicores, bytes_ = group_share(self.config, name)
                largest, cores, memory = SERVER_TYPES[-1]
                yield loaded.finding(where, f"each of {group.count} servers{f' of group {name!r}' if named else ''} "
                                     f"needs {millicores / 1000:g} cpu and {format_bytes(bytes_)} memory; the "
                                     f"largest known type, {largest}, has {cores / 1000:g} cpu and "
                                     f"{format_bytes(memory)}: add servers, or {set_type}", key=True)

    def template_inputs(self) -> dict:
        """`hcloud`, the values (every one a local); `zone_resources`, which zone resources the templates declare."""
        return {"hcloud": hcloud_inputs(self.config),
                "zone_resources": sorted(f"{kind}.{name}" for kind, name in zone_resources(self.config))}

    def provider_secrets(self) -> tuple[tuple[str, str], ...]:
        target = self.config.target
        return ("HCLOUD_TOKEN", target.hcloud_token), ("CLOUDFLARE_API_TOKEN", target.cloudflare.api_token)

    def addresses(self, domain: Domain) -> tuple[str, ...]:
        """A service is no resource of its own here: the domain's records are."""
        return f'cloudflare_dns_record.a["{domain.name}"]', f'cloudflare_dns_record.aaaa["{domain.name}"]'

    def declared(self, inputs: dict) -> tuple[set[tuple[str, str]], set[str]]:
        tls = TLS_RESOURCES if inputs["hcloud"]["certificate_domains"] else set()
        zoned = {tuple(address.split(".")) for address in inputs["zone_resources"]}
        return RESOURCES | tls | zoned, {"services", "domains", "servers", "load_balancer"}

    def runtime(self, project: Project, outputs: Outputs | None = None) -> HcloudRuntime:
        """Over the servers of `outputs`, or without them, over those the last deployment reached."""
        from atl_pipeline.runtime.hcloud import HcloudRuntime

        return HcloudRuntime.of(project, self.config, outputs, self.timings)

    def monitoring(self, project: Project, frontend: Frontend) -> Monitoring:
        """Probes of each domain through the load balancer, from this machine: the servers expose no metrics."""
        from atl_pipeline.monitoring.prometheus import Monitoring
        from atl_pipeline.runtime.supervisor import Supervisor

        supervisor = Supervisor(project.state_dir / "runtime")
        supervisor.ensure_running("")  # the local runtime's supervisord, here without Caddy
        return Monitoring(supervisor, frontend, self.config, {}, self.timings.monitoring_timeout)

    def stop(self, project: Project) -> bool:
        """The servers' Compose projects down (the servers keep running), and monitoring on this machine."""
        from atl_pipeline.runtime.rolling import TargetError
        from atl_pipeline.runtime.supervisor import Supervisor

        try:
            stopped = self.runtime(project).stop()
        except TargetError:  # nothing deployed to servers
            stopped = False
        supervisor = Supervisor(project.state_dir / "runtime")
        monitoring = supervisor.is_running()
        supervisor.shutdown()
        return stopped or monitoring

    def doctor(self, project: Project) -> list[Check]:
        """The tokens set, the SSH key readable, and, once deployed, every server answering SSH."""
        from atl_pipeline.doctor import Check
        from atl_pipeline.runtime.rolling import TargetError

        checks = [self._token(variable, reference) for variable, reference in self.provider_secrets()]
        checks.append(self._identity(project))
        try:
            runtime = self.runtime(project)
        except TargetError:  # nothing deployed yet is no failure of this machine
            return [*checks, Check("servers", True, "none deployed yet")]
        return [*checks, *(Check(f"server {name}", ok, detail, "" if ok else
                                 "is this machine's address in target.ssh_from? see docs/troubleshooting.md")
                           for name, ok, detail in runtime.reachability())]

    @staticmethod
    def _token(variable: str, reference: str) -> Check:
        from atl_pipeline.doctor import Check

        name = SECRET_REF.fullmatch(reference).group(1)
        if os.environ.get(name):
            return Check(f"secret {reference}", True, f"{name} is set ({variable} for the provider)")
        return Check(f"secret {reference}", False, f"{name} is not set", f"export {name} in the environment that "
                     "runs atl and the Dagster daemon")

    def _identity(self, project: Project) -> Check:
        from atl_pipeline.doctor import Check

        identity = self.config.target.ssh_identity
        if identity is None:
            return Check("ssh key", True, "OpenSSH's own keys and agent (target.ssh_identity is not set)")
        path = project.root / Path(identity).expanduser()
        if path.is_file() and os.access(path, os.R_OK):
            return Check("ssh key", True, str(path))
        return Check("ssh key", False, f"{path} cannot be read", "set target.ssh_identity to the private key of "
                     "target.ssh_public_key on this machine")


ROUTER_PORT = 80  # each server's router (runtime/compose.py), behind the load balancer
EVERY_SERVER, LOAD_BALANCER = "every server", "the load balancer"


@dataclass(frozen=True)
class PortUse:
    """Ports taken on the servers of a group (or EVERY_SERVER), or on the LOAD_BALANCER, by what `where` declares
    (() for what atl itself takes)."""

    ports: range
    where: tuple
    what: str
    place: str

    def place_named(self) -> str:
        return self.place if self.place in (EVERY_SERVER, LOAD_BALANCER) else f"the servers of group {self.place!r}"


def port_clashes(uses: list[PortUse]) -> Iterator[list[PortUse]]:
    """The uses that take a port in the same place (on each group's servers, its own uses and those of every
    server; on the load balancer), in groups that meet directly or through each other, each in the table's
    order: n log n however many share a port."""
    order = {id(use): index for index, use in enumerate(uses)}
    groups = {use.place for use in uses} - {EVERY_SERVER, LOAD_BALANCER}
    scopes = [[use for use in uses if use.place in (group, EVERY_SERVER)] for group in groups or {"default"}]
    for scope in [*scopes, [use for use in uses if use.place == LOAD_BALANCER]]:
        group: list[PortUse] = []
        end = 0
        for use in sorted(scope, key=lambda use: (use.ports.start, order[id(use)])):
            if group and use.ports.start >= end:
                yield from _clash(group, order)
                group, end = [], 0
            group.append(use)
            end = max(end, use.ports.stop)
        yield from _clash(group, order)


def _clash(group: list[PortUse], order: dict[int, int]) -> Iterator[list[PortUse]]:
    if len({use.where for use in group}) > 1:
        yield sorted(group, key=lambda use: order[id(use)])


def port_uses(config: Config) -> list[PortUse]:
    """Every port a server or the load balancer takes: sshd and the routers on every server; each service's
    replica block on its group's servers; each TCP port there and on the load balancer."""
    ssh = config.target.ssh_port
    uses = [PortUse(range(ssh, ssh + 1), ("target", "ssh_port"), f"target.ssh_port {ssh}", EVERY_SERVER),
            PortUse(range(ROUTER_PORT, ROUTER_PORT + 1), (), f"the routers' port {ROUTER_PORT}", EVERY_SERVER)]
    for name in config.workloads():
        service = config.services[name]
        group, first = service.servers or "default", service.port
        uses.append(PortUse(range(first, first + PORT_BLOCK), ("services", name, "port"),
                            f"the ports of service {name!r} ({first}-{first + PORT_BLOCK - 1})", group))
        for index, port in enumerate(service.tcp_ports):
            what, where = f"TCP port {port} of service {name!r}", ("services", name, "tcp_ports", index)
            uses += [PortUse(range(port, port + 1), where, what, place) for place in (group, LOAD_BALANCER)]
    return uses


def resource_name(config: Config) -> str:
    """What names the servers and labels every resource on hcloud."""
    return f"{config.project}-{config.environment}"


def server_names(config: Config) -> dict[str, str]:
    """Each server's name, and its group: `<name>-<n>` in the group `default` (as before groups
    existed), `<name>-<group>-<n>` in the others."""
    prefix = resource_name(config)
    return {f"{prefix}-{'' if group == 'default' else f'{group}-'}{index}": group
            for group, spec in config.target.groups.items() for index in range(1, spec.count + 1)}


def group_share(config: Config, group: str) -> tuple[int, int]:
    """The millicores and bytes one server of `group` needs for its share of the replicas placed on
    it, the system included."""
    count = config.target.groups[group].count
    millicores, bytes_ = SYSTEM
    for name, workload in config.workloads().items():
        if (config.services[name].servers or "default") == group:
            on_one = math.ceil(workload.most / count)  # servers sized for the most an autoscaled service runs
            millicores += on_one * workload.resources.millicores
            bytes_ += on_one * workload.resources.bytes
    return millicores, bytes_


def fitting_server_type(config: Config, group: str = "default") -> str | None:
    """The smallest known server type that holds a server's share of `group`; None when none does."""
    millicores, bytes_ = group_share(config, group)
    return next((name for name, cores, memory in SERVER_TYPES if cores >= millicores and memory >= bytes_), None)


def _server(config: Config, group: str, name: str) -> dict:
    spec = config.target.groups[group]
    return {"group": group, "type": spec.type or fitting_server_type(config, group),
            "location": spec.location or config.target.location,
            "ip": str(spec.private_ip) if spec.private_ip else None}


def never_proxied(name: str) -> bool:
    """Names whose traffic is not HTTP through Cloudflare's proxy: mail and the like."""
    return name.split(".", 1)[0] in NEVER_PROXIED


def proxied(domain: Domain, config: Config) -> bool:
    if never_proxied(domain.name):
        return False
    return config.target.cloudflare.proxied if domain.proxied is None else domain.proxied


def _zones_named(cloudflare: Cloudflare) -> str:
    zones = list(cloudflare.all_zones)
    if len(zones) == 1:
        return f"the Cloudflare zone {zones[0]} (target.cloudflare.{'zone' if cloudflare.zone else 'zones'})"
    return f"any of the Cloudflare zones {', '.join(zones)} (target.cloudflare.zone and zones)"


def zone_facts(config: Config) -> dict[str, dict]:
    """Each zone that holds a record of the file: its ID, whether one of its records is proxied (then its SSL
    mode is atl's), and its certificate domains (then Hetzner needs a zone of that name for the challenge)."""
    cloudflare = config.target.cloudflare
    facts: dict[str, dict] = {}
    for domain in config.serving:
        zone = cloudflare.zone_of(domain.name)
        fact = facts.setdefault(zone, {"zone_id": cloudflare.all_zones.get(zone), "proxied": False,
                                       "certificate_domains": []})
        fact["proxied"] |= proxied(domain, config)
        if domain.ssl:
            fact["certificate_domains"].append(domain.name)
    return facts


def zone_resources(config: Config) -> set[tuple[str, str]]:
    """The zones' settings, Hetzner zones and delegations: those of `zone` at the addresses a file of one zone
    has always had, those of `zones` in resources keyed by zone (MORE_ZONES). The lowest TLS version is set
    on `zone` whenever it is given, as before `zones` existed; a zone of `zones` only while it holds a record."""
    cloudflare = config.target.cloudflare
    found = set()
    if cloudflare.zone and cloudflare.min_tls_version:
        found.add(("cloudflare_zone_setting", "min_tls_version"))
    for zone, fact in zone_facts(config).items():
        suffix = "" if zone == cloudflare.zone else MORE_ZONES
        if fact["proxied"]:
            found.add(("cloudflare_zone_setting", f"ssl{suffix}"))
        if cloudflare.min_tls_version and suffix:
            found.add(("cloudflare_zone_setting", f"min_tls_version{suffix}"))
        if fact["certificate_domains"]:
            found |= {("hcloud_zone", f"acme{suffix}"), ("cloudflare_dns_record", f"acme_delegation{suffix}")}
    return found


def _dns_inputs(config: Config) -> dict:
    """The records and zones. A file of one zone gets exactly what it always got, so its Terraform is unchanged;
    with `zones`, each record names its zone's ID, and `zones` the facts of those zones that hold a record."""
    cloudflare = config.target.cloudflare
    several = bool(cloudflare.zones)
    records = {}
    for domain in config.serving:
        on = proxied(domain, config)
        records[domain.name] = {"proxied": on, "ttl": 1 if on else UNPROXIED_TTL}
        if several:
            records[domain.name]["zone_id"] = cloudflare.all_zones.get(cloudflare.zone_of(domain.name))
    dns = {"zone": cloudflare.zone, "zone_id": cloudflare.zone_id, "records": records}
    if several:
        dns["zones"] = {zone: fact for zone, fact in zone_facts(config).items() if zone in cloudflare.zones}
    return dns


def hcloud_inputs(config: Config) -> dict:
    """The hcloud templates' data (each value is rendered through the `hcl` filter)."""
    target = config.target
    prefix = resource_name(config)
    return {
        "name": prefix,
        "location": target.location,
        "network_zone": target.network_zone,
        "network": str(target.network),
        "subnet": str(target.subnet),
        "servers": {name: _server(config, group, name) for name, group in server_names(config).items()},
        "tcp_ports": sorted({port for name in config.workloads() for port in config.services[name].tcp_ports}),
        "sshd": target.sshd.model_dump(),
        "image": target.image,
        "load_balancer_type": target.load_balancer_type,
        "ssh_public_key": target.ssh_public_key,
        "ssh_from": [str(network) for network in target.ssh_from],
        "ssh_port": target.ssh_port,
        **_dns_inputs(config),
        "min_tls_version": target.cloudflare.min_tls_version,
        "certificate_domains": [domain.name for domain in config.serving if domain.ssl],
        "labels": {"atl-project": prefix},
    }
