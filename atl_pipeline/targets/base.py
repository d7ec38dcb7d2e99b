"""What every kind of target answers: the interface the stages use."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, ClassVar

from atl_pipeline.config import Config, Domain, LoadedConfig
from atl_pipeline.findings import Finding
from atl_pipeline.project import Project
from atl_pipeline.targets.outputs import Outputs
from atl_pipeline.timings import DEFAULT_TIMINGS, Timings

if TYPE_CHECKING:  # the runtimes are imported only by what runs: `atl infra validate` stays light
    from atl_pipeline.doctor import Check
    from atl_pipeline.monitoring.prometheus import Monitoring
    from atl_pipeline.operations.logs import Collector
    from atl_pipeline.runtime.http import Frontend
    from atl_pipeline.runtime.rolling import Runtime


class Target(ABC):
    """One kind of target for one configuration."""

    kind: ClassVar[str]  # as `target.kind` in domains.yml, and the folder of its templates
    renews_certificates: ClassVar[bool]  # False where the provider renews them (it is only verified then)
    public_names: ClassVar[bool]  # its domains resolve to it in public DNS: clients' certificates are checked too

    def __init__(self, config: Config, timings: Timings = DEFAULT_TIMINGS):
        self.config, self.timings = config, timings

    # checking a configuration

    @abstractmethod
    def rules(self, loaded: LoadedConfig) -> Iterator[Finding]:
        """The findings of this kind's own rules (the shared ones are in atl_pipeline.validation)."""

    def reserved_ports(self) -> dict[str, int]:
        """Ports that no service's port block may hold: the target's own where services share its machine."""
        return {}

    # Terraform

    def template_inputs(self) -> dict:
        """What this kind's templates are given besides the services, domains and backend."""
        return {}

    def provider_secrets(self) -> tuple[tuple[str, str], ...]:
        """(environment variable, secret reference) of each token the providers read."""
        return ()

    @abstractmethod
    def addresses(self, domain: Domain) -> tuple[str, ...]:
        """The Terraform addresses that change one domain and its service (`--domain`)."""

    @abstractmethod
    def declared(self, inputs: dict) -> tuple[set[tuple[str, str]], set[str]]:
        """The (type, name) of each resource and the name of each output the templates declare."""

    # what runs

    @abstractmethod
    def runtime(self, project: Project, outputs: Outputs | None = None) -> Runtime:
        """The runtime that deploys Terraform's `outputs` (without them: what the last deployment left)."""

    @abstractmethod
    def monitoring(self, project: Project, frontend: Frontend) -> Monitoring:
        """Prometheus and the blackbox exporter on this machine, scraping and probing what this kind runs."""

    def status(self, project: Project) -> dict:
        """What runs and whether each domain answers (`atl infra status`), and the alerts firing."""
        from atl_pipeline.monitoring.alertmanager import alerting_status
        from atl_pipeline.operations import autoscale

        url = f"http://127.0.0.1:{self.config.target.alertmanager_port}"
        report = {**self.runtime(project).status(), "alerting": {"alertmanager_url": url, **alerting_status(project)}}
        scaling = autoscale.status(self.config, project.state_dir / autoscale.DECISIONS)
        for service in report["services"]:
            if service["name"] in scaling:
                service["autoscale"] = scaling[service["name"]]
        return report

    def collector(self, project: Project) -> Collector:
        """The log collector on this machine, for this configuration's sources."""
        from atl_pipeline.operations.logs import Collector
        from atl_pipeline.runtime.supervisor import Supervisor

        return Collector(project, Supervisor(project.state_dir / "runtime"), self.config, os.environ)

    def stop(self, project: Project) -> bool:
        """Stop what runs, keeping what was deployed for the next deploy; True when anything ran."""
        return self.runtime(project).stop()

    def doctor(self, project: Project) -> list[Check]:
        """What this machine needs for this kind, each with what to do when it is missing."""
        return []
