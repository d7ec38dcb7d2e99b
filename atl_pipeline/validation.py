"""Semantic rules over a whole configuration: what the schema alone cannot see.

Each rule takes the loaded configuration and yields findings located in the file.
`validate` runs them all, so an operator sees every problem at once.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from atl_pipeline.config import Domain, LoadedConfig
from atl_pipeline.config.model import PORT_BLOCK
from atl_pipeline.config.quantity import cpu_millicores, format_bytes, memory_bytes
from atl_pipeline.findings import MAX_FINDINGS, Finding, capped
from atl_pipeline.terraform import hcloud

SHELLS = {"sh", "bash", "rbash", "dash", "ash", "zsh", "ksh", "mksh", "lksh", "oksh", "pdksh", "yash", "posh", "fish",
          "csh", "tcsh", "rc", "es", "pwsh", "nu", "xonsh", "elvish", "su"}  # su runs its command through a shell
# programs that run the program named in their arguments (busybox: its applet)
WRAPPERS = {"env", "nice", "nohup", "timeout", "setsid", "stdbuf", "busybox", "ionice", "chrt", "taskset", "sudo",
            "doas", "runuser", "flock", "time", "xargs", "unshare", "nsenter", "chroot", "setpriv", "prlimit",
            "systemd-run", "eatmydata", "unbuffer", "faketime", "firejail", "bwrap", "strace", "ltrace", "valgrind",
            "catchsegv", "tini", "dumb-init", "s6-setuidgid", "chpst", "numactl", "cgexec", "watch"}


@dataclass(frozen=True)
class ValidatedConfig:
    """A configuration with the findings of every semantic rule; deployable only when `ok`."""

    loaded: LoadedConfig
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not self.findings


def validate(loaded: LoadedConfig) -> ValidatedConfig:
    """Every rule's findings: the first MAX_FINDINGS in file order, then how many more."""
    findings = [finding for rule in RULES for finding in rule(loaded)]
    return ValidatedConfig(loaded, tuple(capped(findings)))


def unique_domain_names(loaded: LoadedConfig) -> Iterator[Finding]:
    first: dict[str, int] = {}
    for index, domain in enumerate(loaded.config.domains):
        if domain.name in first:
            line = loaded.line(("domains", first[domain.name]))
            yield loaded.finding(("domains", index, "name"),
                                 f"domain {domain.name} is declared twice (first at line {line}); "
                                 "remove one, or merge what they say into the first")
        else:
            first[domain.name] = index


def services_defined(loaded: LoadedConfig) -> Iterator[Finding]:
    services = loaded.config.services
    undefined = (index for index, domain in enumerate(loaded.config.domains) if domain.service not in services)
    for count, index in enumerate(undefined):
        name = loaded.config.domains[index].service
        # a hint costs a comparison with every service: only for the findings that are shown
        close = difflib.get_close_matches(name, services, n=1) if count < MAX_FINDINGS else []
        hint = f"; did you mean {close[0]!r}?" if close else "; define it under `services:`"
        yield loaded.finding(("domains", index, "service"), f"service {name!r} is not defined{hint}")


def shared_services_agree(loaded: LoadedConfig) -> Iterator[Finding]:
    """Domains routed to one service run the same replicas: they must ask for the same."""
    first: dict[str, tuple[int, Domain]] = {}
    for index, domain in enumerate(loaded.config.domains):
        if domain.service not in first:
            first[domain.service] = (index, domain)
            continue
        other_index, other = first[domain.service]
        for field in ("replicas", "resources"):
            if getattr(domain, field) != getattr(other, field):
                line = loaded.line(("domains", other_index))
                yield loaded.finding(("domains", index, field),
                                     f"{domain.name} and {other.name} (line {line}) share service "
                                     f"{domain.service!r} but ask for different {field}; make them equal")


def local_commands(loaded: LoadedConfig) -> Iterator[Finding]:
    """The local target runs each service in use as processes of its own argv."""
    if loaded.config.target.kind != "local":
        return
    for name in _replicas_by_service(loaded):
        command = loaded.config.services[name].command
        if command is None:
            yield loaded.finding(("services", name),
                                 f"service {name!r} has no command; the local target runs services as processes")
        elif shell := shell_in([argument.format(port="1", replica="0", service=name) for argument in command]):
            yield loaded.finding(("services", name, "command"),
                                 f"service {name!r} runs a shell ({shell}); give the program's own "
                                 "arguments instead, so no configuration value is ever read by a shell")


def shell_in(argv: list[str]) -> str | None:
    """The shell a command runs, as its program or through wrappers that run another program
    (`env`, `nice`, `timeout`...), whose options are not parsed: after a wrapper, an argument
    that names a shell is taken for one. None when it runs no shell."""
    if not argv:
        return None
    program = _program(argv[0])
    if program in SHELLS:
        return repr(argv[0])
    if program not in WRAPPERS:
        return None
    wrapped = next((argument for argument in argv[1:] if _program(argument) in SHELLS), None)
    return f"{wrapped!r} through {argv[0]!r}" if wrapped else None


def _program(argument: str) -> str:
    """The program an argument names: its first word's file name, without a version (`bash5.2`)."""
    words = argument.split(maxsplit=1)
    return os.path.basename(words[0]).rstrip("0123456789.") if words else ""


def ports_disjoint(loaded: LoadedConfig) -> Iterator[Finding]:
    """Each service in use owns PORT_BLOCK ports from its `port`; they meet no other service's
    and, on the local target (where services share this machine), none of the target's."""
    target = loaded.config.target
    if len(set(target.ports.values())) < len(target.ports):
        yield loaded.finding(("target",), f"the target's ports must all differ: {target.ports}")
    beside = target.ports if target.kind == "local" else {}
    blocks: list[tuple[range, str]] = []
    for name in _replicas_by_service(loaded):
        port = loaded.config.services[name].port
        ports = range(port, port + PORT_BLOCK)
        where = ("services", name, "port")
        if ports.stop - 1 > 65535:
            yield loaded.finding(where, f"service {name!r} needs ports {port}-{ports.stop - 1}, past 65535")
        for setting, lb_port in beside.items():
            if lb_port in ports:
                yield loaded.finding(where, f"service {name!r} takes ports {port}-{ports.stop - 1}, which holds "
                                     f"target.{setting} {lb_port}")
        blocks.append((ports, name))
    for group in _overlapping(blocks):
        (_, first), (second_ports, second), *more = group
        names = f"{first!r} and {second!r}" if not more else f"{first!r}, {second!r} and {len(more):,} more"
        verb = "both use" if not more else "use ports from"
        yield loaded.finding(("services", second, "port"), f"services {names} {verb} port {second_ports.start} "
                             f"(a service takes {PORT_BLOCK} ports from its port): give each its own block")


def _overlapping(blocks: list[tuple[range, str]]) -> Iterator[list[tuple[range, str]]]:
    """The blocks that overlap, directly or through each other, in groups sorted by port: each
    clash is one group, however many services share it."""
    group: list[tuple[range, str]] = []
    end = 0
    for ports, name in sorted(blocks, key=lambda block: block[0].start):
        if group and ports.start < end:
            group.append((ports, name))
            end = max(end, ports.stop)
            continue
        if len(group) > 1:
            yield group
        group, end = [(ports, name)], ports.stop
    if len(group) > 1:
        yield group


def within_capacity(loaded: LoadedConfig) -> Iterator[Finding]:
    if loaded.config.target.kind != "local":
        return
    millicores = bytes_ = 0
    for domain in loaded.config.first_domains().values():
        millicores += domain.replicas * domain.resources.millicores
        bytes_ += domain.replicas * domain.resources.bytes
    capacity_millicores, capacity_bytes, origin = _capacity(loaded)
    if millicores > capacity_millicores or bytes_ > capacity_bytes:
        yield loaded.finding(("domains",), f"the domains request {millicores / 1000:g} cpu and "
                             f"{format_bytes(bytes_)} memory; {origin} has {capacity_millicores / 1000:g} cpu "
                             f"and {format_bytes(capacity_bytes)}: lower replicas or resources, or raise "
                             "target.capacity", key=True)


def machine_capacity() -> tuple[int, int]:
    """Cores this process may run on (in millicores) and physical memory (bytes)."""
    return len(os.sched_getaffinity(0)) * 1000, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _capacity(loaded: LoadedConfig) -> tuple[int, int, str]:
    capacity = loaded.config.target.capacity
    if capacity is not None:
        return cpu_millicores(capacity.cpu), memory_bytes(capacity.memory), "target.capacity"
    return (*machine_capacity(), "this machine")


def _replicas_by_service(loaded: LoadedConfig) -> dict[str, int]:
    """Each defined service that a domain routes to, with the replicas its first domain asks for."""
    return {name: domain.replicas for name, domain in loaded.config.first_domains().items()
            if name in loaded.config.services}


def hcloud_fits(loaded: LoadedConfig) -> Iterator[Finding]:
    """On hcloud: each service has an image, the domains are in the Cloudflare zone, the subnet
    is in the network, SSH is open to someone, mail-like names are not proxied, a proxied domain
    has a certificate, and a server type holds a server's share."""
    config = loaded.config
    if config.target.kind != "hcloud":
        return
    target = config.target
    for name in _replicas_by_service(loaded):
        if config.services[name].image is None:
            yield loaded.finding(("services", name), f"service {name!r} has no image; the hcloud target runs "
                                 "services as containers")
    zone = target.cloudflare.zone
    for index, domain in enumerate(config.domains):
        if domain.name != zone and not domain.name.endswith(f".{zone}"):
            yield loaded.finding(("domains", index, "name"), f"{domain.name} is not in the Cloudflare zone {zone} "
                                 "(target.cloudflare.zone)")
        if domain.proxied and hcloud.never_proxied(domain.name):
            yield loaded.finding(("domains", index, "proxied"), f"{domain.name} must not go through Cloudflare's "
                                 "HTTP proxy (mail and the like): remove `proxied: true`")
        if not domain.ssl and hcloud.proxied(domain, target):
            yield loaded.finding(("domains", index, "ssl"), f"{domain.name} goes through Cloudflare's proxy, which "
                                 "reaches the load balancer over HTTPS and verifies its certificate (SSL mode Full "
                                 "(strict)); the certificate holds only `ssl: true` domains: set `ssl: true`, or "
                                 "`proxied: false`")
    if not target.network.is_private or not target.subnet.subnet_of(target.network):
        yield loaded.finding(("target", "subnet"), f"the subnet {target.subnet} must lie in the private network "
                             f"{target.network} (RFC 1918)")
    if not target.ssh_from:
        yield loaded.finding(("target", "ssh_from"), "the deployment reaches the servers over SSH, which the firewall "
                             "closes to every address not in target.ssh_from: list the ranges of the machines that "
                             "deploy")
    yield from _ssh_port_free(loaded)
    if len(name := hcloud.resource_name(config)) > hcloud.MAX_NAME:
        yield loaded.finding(("project",), f"`{name}` names the servers and labels on hcloud: keep project and "
                             f"environment within {hcloud.MAX_NAME} characters together")
    if target.server_type is None and target.location not in hcloud.SIZED_LOCATIONS:
        yield loaded.finding(("target", "location"), f"set target.server_type: the types sized automatically "
                             f"({', '.join(name for name, _, _ in hcloud.SERVER_TYPES)}) are offered in "
                             f"{', '.join(hcloud.SIZED_LOCATIONS)} only")
    elif target.server_type is None and hcloud.fitting_server_type(config) is None:
        millicores, bytes_ = hcloud.server_share(config)
        largest, cores, memory = hcloud.SERVER_TYPES[-1]
        yield loaded.finding(("target", "servers"), f"each of {target.servers} servers needs {millicores / 1000:g} "
                             f"cpu and {format_bytes(bytes_)} memory; the largest known type, {largest}, has "
                             f"{cores / 1000:g} cpu and {format_bytes(memory)}: add servers, or set "
                             "target.server_type", key=True)


def _ssh_port_free(loaded: LoadedConfig) -> Iterator[Finding]:
    """The servers' sshd takes target.ssh_port on every address: not the routers' port, nor a replica's."""
    port = loaded.config.target.ssh_port
    if port == 80:
        yield loaded.finding(("target", "ssh_port"), "target.ssh_port 80 is the routers' port: choose another")
    for name in _replicas_by_service(loaded):
        first = loaded.config.services[name].port
        if first <= port < first + PORT_BLOCK:
            yield loaded.finding(("target", "ssh_port"), f"target.ssh_port {port} is in the ports of service "
                                 f"{name!r} ({first}-{first + PORT_BLOCK - 1}): choose another")


RULES: list[Callable[[LoadedConfig], Iterator[Finding]]] = [
    unique_domain_names, services_defined, shared_services_agree,
    local_commands, ports_disjoint, within_capacity, hcloud_fits,
]
