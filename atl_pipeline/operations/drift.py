"""Drift: what exists compared with what the last apply declared, and healing it.

Two comparisons: a refresh-only Terraform plan (infrastructure changed outside Terraform:
a server deleted in the console, a record edited by hand), and what runs on the target
against Terraform's outputs (a replica stopped, a route removed, a container of another
project). Healing deploys the outputs again; it changes nothing in Terraform, whose drift
a deploy run resolves.
"""

from __future__ import annotations

from dataclasses import dataclass

from atl_pipeline.project import Project
from atl_pipeline.targets import Target
from atl_pipeline.targets.outputs import Outputs
from atl_pipeline.terraform.stages import terraform


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


def detect(project: Project, target: Target, *, heal: bool = False) -> DriftReport:
    """Compare; with `heal`, redeploy what Terraform declares and compare again."""
    config = target.config
    runner = terraform(project, config.state, config.environment, target.provider_secrets())
    if not (runner.workdir / ".terraform").is_dir():
        return DriftReport(["nothing was ever applied for this environment: run a deploy"], [], [])
    with project.lock():
        infrastructure = ["a refresh-only plan finds changes made outside Terraform; a deploy run reconciles them"
                          ] if runner.drifted() else []
        outputs = Outputs.parse(runner.outputs())
    runtime = target.runtime(project)  # what the last deployment left running, where it left it
    found = runtime.drift(outputs.services, outputs.domains)
    if not (heal and found):
        return DriftReport(infrastructure, found, [])
    runtime.deploy(outputs.services, outputs.domains)
    remaining = runtime.drift(outputs.services, outputs.domains)
    return DriftReport(infrastructure, remaining, [line for line in found if line not in remaining])
