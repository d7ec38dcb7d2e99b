"""What each target's runtime shares: it makes what runs match Terraform's `services` and
`domains` outputs, rolling changed services in beside the old, and records what it deployed
(with each service's previous release, to roll back to)."""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from atl_pipeline.errors import AtlError
from atl_pipeline.files import replace_file
from atl_pipeline.runtime.http import Frontend
from atl_pipeline.targets.outputs import DomainOutput, ServiceOutput
from atl_pipeline.timings import Timings

Services = dict[str, ServiceOutput]
Domains = dict[str, DomainOutput]


class TargetError(AtlError):
    """A target's runtime could not do what was asked; the message says why."""


class DeployError(TargetError):
    """A new release did not become healthy; what ran before still serves."""


@dataclass(frozen=True)
class ServiceOutcome:
    name: str
    release: str
    action: str  # unchanged, repaired (stopped replicas started again), started, rolled or stopped
    replicas: tuple[Replica, ...] = ()


@dataclass(frozen=True)
class Replica:
    """Where one replica runs: its port, and its pid on this machine or the server it is on."""

    port: int
    pid: int | None = None
    server: str | None = None
    state: str = ""

    @property
    def where(self) -> str:
        return f"{self.server}:{self.port}" if self.server else f"{self.port} (pid {self.pid})"


class RecordedService(ServiceOutput):
    """A service as a deployment recorded it: its output, the slot it runs in, and (on this
    machine) its supervisord group."""

    slot: int
    group: str = ""
    since: float = 0.0  # when its release began serving (epoch seconds)

    def output(self) -> ServiceOutput:
        return ServiceOutput.model_validate(self.model_dump(exclude={"slot", "group", "since"}))


@dataclass(frozen=True)
class Deployment:
    """What the deployment stage did, and what the stages after it need to check it."""

    outcomes: tuple[ServiceOutcome, ...]
    frontend: Frontend
    services: Services
    domains: Domains
    # the domains served as the last deployment left them: the same output, their service unchanged
    settled: frozenset[str] = frozenset()


def settled_domains(before: Domains, domains: Domains, outcomes: Iterable[ServiceOutcome]) -> frozenset[str]:
    """The domains this deployment left as they were: the same output as before it, and a service
    it did not start, roll or repair."""
    unchanged = {outcome.name for outcome in outcomes if outcome.action == "unchanged"}
    return frozenset(name for name, domain in domains.items()
                     if before.get(name) == domain and domain.service in unchanged)


class Runtime(ABC):
    deployed_file: Path
    timings: Timings

    @property
    @abstractmethod
    def frontend(self) -> Frontend:
        """Where clients reach the services."""

    @abstractmethod
    def deploy(self, services: Services, domains: Domains) -> list[ServiceOutcome]:
        """Make what runs match Terraform's outputs; the ServiceOutcome of each service."""

    @abstractmethod
    def drift(self, services: Services, domains: Domains) -> list[str]:
        """How what runs differs from Terraform's outputs; empty when it matches."""

    @abstractmethod
    def status(self) -> dict:
        """What runs and whether each domain answers, as `atl infra status --json` prints it."""

    @abstractmethod
    def stop(self) -> bool:
        """Stop the services (and what runs beside them); what was deployed is kept for the next
        deploy. True when anything was running."""

    def deployed(self) -> dict:
        """What the last deployment left running, as recorded: its `domains`, its `services` (with
        their slot) and the `previous` ones."""
        return json.loads(self.deployed_file.read_text()) if self.deployed_file.exists() else {}

    def deployed_services(self, key: str = "services") -> dict[str, RecordedService]:
        """The services the last deployment left running (or, with `previous`, those it replaced)."""
        return {name: RecordedService.model_validate(spec) for name, spec in self.deployed().get(key, {}).items()}

    def desired(self, services: Services) -> Services:
        """Terraform's services, but a release a remediation rolled back stays rolled back (held) until
        Terraform asks for another release of that service: a deploy or a heal never rolls it forward."""
        held, running = self.held(), self.deployed_services()
        return {name: running[name].output() if held.get(name) == spec.release and name in running else spec
                for name, spec in services.items()}

    def held(self) -> dict[str, str]:
        """The services a remediation rolled back, with the release each was rolled back from."""
        return self.deployed().get("held", {})

    def deployed_domains(self) -> Domains:
        return {name: DomainOutput.model_validate(spec) for name, spec in self.deployed().get("domains", {}).items()}

    def roll_back(self, releases: dict[str, str], hold: bool = False) -> list[ServiceOutcome]:
        """Roll each service that still runs the given release back to the one it ran before
        (rolling, health-gated). A service already rolled back is left alone, so a health check run
        again never rolls forward; nothing to roll back returns no outcome. With `hold`, the releases
        stay rolled back until Terraform asks for others (`desired`)."""
        running, previous = self.deployed_services(), self.deployed_services("previous")
        names = {name for name, release in releases.items()
                 if name in running and running[name].release == release and name in previous}
        if not names:
            return []
        services = {name: spec.output() for name, spec in running.items()}
        services.update({name: previous[name].output() for name in names})
        outcomes = self.deploy(services, self.deployed_domains())
        if hold:
            held = {**self.held(), **{name: releases[name] for name in names}}
            replace_file(self.deployed_file, json.dumps({**self.deployed(), "held": held}, indent=2))
        return outcomes


def to_roll_back(outcomes: Sequence[ServiceOutcome], failing: set[str]) -> dict[str, str]:
    """Of the services this deployment rolled to a new release, those whose domains now fail their
    health check, with that release: what the health check rolls back."""
    return {o.name: o.release for o in outcomes if o.action == "rolled" and o.name in failing}


def domains_record(domains: Domains) -> dict:
    """The domains as a deployment record keeps them (JSON)."""
    return {name: domain.model_dump(mode="json") for name, domain in domains.items()}


def record_of(before: dict, services: Services, slots: dict[str, int], groups: dict[str, str] | None = None) -> dict:
    """The `services`, `previous` and `held` of the next deployment record (JSON), given the one
    `before` it. Each service has the time its release began serving (`since`); `previous` keeps the
    release each ran before its current one, across deployments that leave it as it was; a hold stays
    while the service runs the release it was rolled back to."""
    old, old_previous, now = before.get("services", {}), before.get("previous", {}), time.time()
    recorded, previous = {}, {}
    for name, spec in services.items():
        same = name in old and old[name]["release"] == spec.release
        recorded[name] = {**spec.model_dump(mode="json"), "slot": slots[name],
                          **({"group": groups[name]} if groups else {}), "since": old[name].get("since", now)
                          if same else now}
        if kept := (old_previous.get(name) if same else old.get(name)):
            previous[name] = kept
    held = {name: release for name, release in before.get("held", {}).items() if name in recorded and
            recorded[name]["release"] == old.get(name, {}).get("release")}
    return {"services": recorded, "previous": previous, "held": held}
