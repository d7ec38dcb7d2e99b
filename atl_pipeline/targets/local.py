"""The embedded local target: this machine, no cloud account.

Terraform's built-in `terraform_data` records what is declared; services run as processes
under supervisord, behind Caddy on loopback with TLS from its internal CA; Prometheus and
the blackbox exporter watch them. Everything lives under the project's `.atl/`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from atl_pipeline.config import Domain, LoadedConfig
from atl_pipeline.config.quantity import cpu_millicores, format_bytes, memory_bytes
from atl_pipeline.findings import Finding
from atl_pipeline.project import Project
from atl_pipeline.targets.base import Target
from atl_pipeline.targets.outputs import Outputs

if TYPE_CHECKING:
    from atl_pipeline.doctor import Check
    from atl_pipeline.monitoring.prometheus import Monitoring
    from atl_pipeline.runtime.http import Frontend
    from atl_pipeline.runtime.local import LocalRuntime

RESOURCES = {("terraform_data", "service"), ("terraform_data", "domain")}


class Local(Target):
    kind = "local"
    renews_certificates = True  # Caddy's internal CA: the certificates stage renews them near expiry
    public_names = False  # the domains are served on loopback, whatever the public DNS says of them

    def rules(self, loaded: LoadedConfig) -> Iterator[Finding]:
        yield from self._commands(loaded)
        yield from self._within_capacity(loaded)

    @staticmethod
    def _commands(loaded: LoadedConfig) -> Iterator[Finding]:
        """Each service in use runs as processes of its own argv, reached over HTTP."""
        workloads = loaded.config.workloads()
        for name, service in loaded.config.services.items():
            if name in workloads and service.command is None:
                yield loaded.finding(("services", name), f"service {name!r} has no command; the local target "
                                     "runs services as processes")
            if name in workloads and service.tcp_ports:
                yield loaded.finding(("services", name, "tcp_ports"), f"service {name!r}: TCP ports are not "
                                     "supported on the local target (Caddy from PyPI proxies HTTP only; its TCP "
                                     "proxy is a plugin it is built without): deploy it to hcloud")

    def _within_capacity(self, loaded: LoadedConfig) -> Iterator[Finding]:
        millicores = bytes_ = 0
        for workload in loaded.config.workloads().values():
            millicores += workload.most * workload.resources.millicores
            bytes_ += workload.most * workload.resources.bytes
        capacity_millicores, capacity_bytes, origin = self._capacity()
        if millicores > capacity_millicores or bytes_ > capacity_bytes:
            yield loaded.finding(("domains",), f"the domains request {millicores / 1000:g} cpu and "
                                 f"{format_bytes(bytes_)} memory; {origin} has {capacity_millicores / 1000:g} "
                                 f"cpu and {format_bytes(capacity_bytes)}: lower replicas or resources, or raise "
                                 "target.capacity", key=True)

    def _capacity(self) -> tuple[int, int, str]:
        capacity = self.config.target.capacity
        if capacity is not None:
            return cpu_millicores(capacity.cpu), memory_bytes(capacity.memory), "target.capacity"
        return (*machine_capacity(), "this machine")

    def reserved_ports(self) -> dict[str, int]:
        """The services share this machine with the load balancer and monitoring."""
        return self.config.target.ports

    def addresses(self, domain: Domain) -> tuple[str, ...]:
        return f'terraform_data.domain["{domain.name}"]', f'terraform_data.service["{domain.service}"]'

    def declared(self, inputs: dict) -> tuple[set[tuple[str, str]], set[str]]:
        return RESOURCES, {"services", "domains"}

    def runtime(self, project: Project, outputs: Outputs | None = None) -> LocalRuntime:
        """With outputs, on the configuration's ports; without, on those the last deployment used."""
        from atl_pipeline.runtime.local import LocalRuntime, deployed_runtime

        if outputs is None:
            return deployed_runtime(project, self.timings)
        return LocalRuntime(project, self.config.target, self.timings)

    def monitoring(self, project: Project, frontend: Frontend) -> Monitoring:
        """Every replica that exposes metrics and Caddy scraped, beside the probes of each domain through Caddy."""
        from atl_pipeline.monitoring.prometheus import Monitoring
        from atl_pipeline.runtime.local import LocalRuntime

        runtime = LocalRuntime(project, self.config.target)
        replicas = [{"targets": [f"127.0.0.1:{port}" for port in spec.slot_ports(spec.slot)],
                     "labels": {"service": name, "__metrics_path__": spec.metrics_path}}
                    for name, spec in sorted(runtime.deployed_services().items()) if spec.metrics_path]
        scraped = {"services": replicas, "caddy": [{"targets": [f"127.0.0.1:{runtime.lb.admin_port}"]}]}
        return Monitoring(runtime.supervisor, frontend, self.config, scraped, self.timings.monitoring_timeout)

    def doctor(self, project: Project) -> list[Check]:
        from atl_pipeline.doctor import port_checks

        return port_checks(project, self.config.target.ports)


def machine_capacity() -> tuple[int, int]:
    """Cores this process may run on (in millicores) and physical memory (bytes)."""
    return len(os.sched_getaffinity(0)) * 1000, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
