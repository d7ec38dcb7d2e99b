"""Drift: what exists compared with what the last apply declared, and healing it.

Two comparisons: a refresh-only Terraform plan (infrastructure changed outside
Terraform), and what runs on the target against Terraform's outputs (a replica stopped
by hand, a route removed from the load balancer). Healing deploys the outputs again; it
changes nothing in Terraform, whose drift a deploy run resolves.
"""

from __future__ import annotations

from dataclasses import dataclass

from atl_pipeline.config import Config
from atl_pipeline.project import Project
from atl_pipeline.runtime.local import deployed_runtime
from atl_pipeline.terraform.stages import provider_secrets, terraform


@dataclass(frozen=True)
class DriftReport:
    terraform: list[str]
    runtime: list[str]
    healed: list[str]  # runtime drift that healing removed

    @property
    def drifted(self) -> bool:
        return bool(self.terraform or self.runtime or self.healed)

    def lines(self) -> list[str]:
        return ([f"terraform: {line}" for line in self.terraform] + [f"runtime: {line}" for line in self.runtime]
                + [f"healed: {line}" for line in self.healed])


def detect(project: Project, config: Config, *, heal: bool = False) -> DriftReport:
    """Compare; with `heal`, redeploy what Terraform declares and compare again. On a target
    other than local, only the infrastructure is compared: what its servers run is not yet."""
    runner = terraform(project, config.state, config.environment, provider_secrets(config))
    if not (runner.workdir / ".terraform").is_dir():
        return DriftReport(["nothing was ever applied for this environment: run a deploy"], [], [])
    with project.lock():
        infrastructure = ["a refresh-only plan finds changes made outside Terraform; a deploy run reconciles them"
                          ] if runner.drifted() else []
        outputs = runner.outputs()
    if config.target.kind != "local":
        return DriftReport(infrastructure, [], [])
    runtime = deployed_runtime(project)
    services, domains = outputs.get("services", {}), outputs.get("domains", {})
    found = runtime.drift(services, domains)
    if not (heal and found):
        return DriftReport(infrastructure, found, [])
    runtime.deploy(services, domains)
    remaining = runtime.drift(services, domains)
    return DriftReport(infrastructure, remaining, [line for line in found if line not in remaining])
