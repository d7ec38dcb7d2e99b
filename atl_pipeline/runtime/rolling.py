"""What each target's runtime shares: it makes what runs match Terraform's `services` and
`domains` outputs, rolling changed services in beside the old, and records what it deployed
(with each service's previous release, to roll back to)."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from atl_pipeline.runtime.http import Frontend

DRAIN_SECONDS = 2.5  # > Caddy's health-check interval and failure memory: it trusts the new replicas
SLOT_PORTS = ("ports", "standby_ports")  # a release's ports in each of the two slots (Terraform's outputs)


class TargetError(Exception):
    """A target's runtime could not do what was asked; the message says why."""


class DeployError(TargetError):
    """A new release did not become healthy; what ran before still serves."""


@dataclass(frozen=True)
class ServiceOutcome:
    name: str
    release: str
    action: str  # unchanged, repaired (stopped replicas started again), started, rolled or stopped
    replicas: tuple[dict, ...] = ()  # where each replica runs: pid or server, port


@dataclass(frozen=True)
class Deployment:
    """What the deployment stage did, and what the stages after it need to check it."""

    outcomes: tuple[ServiceOutcome, ...]
    frontend: Frontend
    services: dict
    domains: dict


class Runtime(ABC):
    deployed_file: Path

    @property
    @abstractmethod
    def frontend(self) -> Frontend:
        """Where clients reach the services."""

    @abstractmethod
    def deploy(self, services: dict[str, dict], domains: dict[str, dict]) -> list[ServiceOutcome]:
        """Make what runs match Terraform's outputs; the ServiceOutcome of each service."""

    def deployed(self) -> dict:
        """What the last deployment left running: its `domains`, and its `services` (with their slot)
        and the `previous` ones."""
        return json.loads(self.deployed_file.read_text()) if self.deployed_file.exists() else {}

    def roll_back(self, releases: dict[str, str]) -> list[ServiceOutcome]:
        """Roll each service that still runs the given release back to the one the last deployment
        replaced (rolling, health-gated). A service already rolled back is left alone, so a health
        check run again never rolls forward; nothing to roll back returns no outcome."""
        record = self.deployed()
        running, previous = record.get("services", {}), record.get("previous", {})
        names = {name for name, release in releases.items()
                 if running.get(name, {}).get("release") == release and name in previous}
        if not names:
            return []
        services = {name: as_output(spec) for name, spec in running.items()}
        services.update({name: as_output(previous[name]) for name in names})
        return self.deploy(services, record["domains"])


def as_output(recorded: dict) -> dict:
    """A service as Terraform's output has it, from its record of a deployment."""
    return {key: value for key, value in recorded.items() if key not in ("slot", "group")}
