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
from atl_pipeline.findings import MAX_FINDINGS, Finding, capped
from atl_pipeline.targets import target_of

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
    undefined = (index for index, domain in enumerate(loaded.config.domains)
                 if not domain.external and domain.service not in services)
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
        if domain.external:
            continue
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


def required_domains_enabled(loaded: LoadedConfig) -> Iterator[Finding]:
    for index, domain in enumerate(loaded.config.domains):
        if domain.required and not domain.enabled:
            yield loaded.finding(("domains", index, "enabled"), f"{domain.name} is required: it may not be disabled; "
                                 "remove `required: true` first if it really must go")


def internal_services_stand_alone(loaded: LoadedConfig) -> Iterator[Finding]:
    """Replicas and resources are a routed service's domains' to say; an internal one says its own."""
    routed = {domain.service for domain in loaded.config.domains if not domain.external}
    for name, service in loaded.config.services.items():
        if service.internal and name in routed:
            yield loaded.finding(("services", name, "internal"), f"service {name!r} is internal but a domain routes "
                                 "to it: remove `internal: true`, or the domain")
        for field in ("replicas", "resources"):
            if getattr(service, field) is not None and not service.internal:
                yield loaded.finding(("services", name, field), f"service {name!r} takes its {field} from its "
                                     f"domains: set {field} there, or make it `internal: true`")


def autoscaled_within_bounds(loaded: LoadedConfig) -> Iterator[Finding]:
    """A service that scales starts inside its bounds."""
    for name, workload in loaded.config.workloads().items():
        bounds = workload.autoscale
        if bounds and not bounds.min <= workload.replicas <= bounds.max:
            yield loaded.finding(("services", name, "autoscale"), f"service {name!r} starts at {workload.replicas} "
                                 f"replicas, outside its autoscale bounds ({bounds.min} to {bounds.max}): set its "
                                 "domains' replicas between them")


def commands_run_no_shell(loaded: LoadedConfig) -> Iterator[Finding]:
    """A service's command is its program's own arguments: no shell reads a value of the file."""
    for name in loaded.config.workloads():
        command = loaded.config.services[name].command
        if command and (shell := shell_in([argument.format(port="1", replica="0", service=name)
                                           for argument in command])):
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
    beside = target_of(loaded.config).reserved_ports()
    blocks: list[tuple[range, str]] = []
    for name in loaded.config.workloads():
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


def accounts_distinct(loaded: LoadedConfig) -> Iterator[Finding]:
    """The console tells who signed in by name: an operator and a service account never share one."""
    for name in loaded.config.service_accounts.keys() & loaded.config.operators.keys():
        yield loaded.finding(("service_accounts", name), f"{name!r} is an operator's name too: give the service "
                             "account its own", key=True)


def target_rules(loaded: LoadedConfig) -> Iterator[Finding]:
    """The rules of the configuration's kind of target."""
    yield from target_of(loaded.config).rules(loaded)


RULES: list[Callable[[LoadedConfig], Iterator[Finding]]] = [
    unique_domain_names, services_defined, shared_services_agree, required_domains_enabled,
    internal_services_stand_alone, autoscaled_within_bounds, commands_run_no_shell, ports_disjoint, accounts_distinct,
    target_rules,
]
