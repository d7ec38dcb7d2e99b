"""The stages' collaborators as Dagster resources: what a test or an operator swaps or tunes."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from dagster import ConfigurableResource

from atl_pipeline.config import Config
from atl_pipeline.project import Project
from atl_pipeline.targets import Target, target_of
from atl_pipeline.terraform.stages import TerraformApply, TerraformPlan, apply_plan, make_plan
from atl_pipeline.timings import DEFAULT_TIMINGS, Timings
from atl_pipeline.validation import ValidatedConfig


class ProjectResource(ConfigurableResource):
    """The project a run works on: its domains.yml, state and Dagster instance."""

    root: str | None = None
    """Its folder; none: ATL_PROJECT_DIR, or else the working directory of the run."""

    def as_project(self) -> Project:
        return Project(Path(self.root).resolve()) if self.root else Project.from_env()


class TerraformResource(ConfigurableResource):
    """Terraform on the project's state: what the plan and apply stages run."""

    def plan(self, project: Project, validated: ValidatedConfig, name: str, *, destroy_approved: bool,
             domain: str | None, destroy: bool, replicas: dict[str, int]) -> TerraformPlan:
        return make_plan(project, validated, name, destroy_approved=destroy_approved, domain=domain,
                         destroy=destroy, replicas=replicas)

    def apply(self, project: Project, plan: TerraformPlan) -> TerraformApply:
        return apply_plan(project, plan)


class TargetResource(ConfigurableResource):
    """Where the services run (the configuration's Target), and how long its stages wait
    (atl_pipeline/timings.py says what each field is)."""

    health_timeout: float = DEFAULT_TIMINGS.health_timeout
    rollout_timeout: float = DEFAULT_TIMINGS.rollout_timeout
    drain_seconds: float = DEFAULT_TIMINGS.drain_seconds
    settle_seconds: float = DEFAULT_TIMINGS.settle_seconds
    monitoring_timeout: float = DEFAULT_TIMINGS.monitoring_timeout
    renew_within_days: float = DEFAULT_TIMINGS.renew_within_days

    def of(self, config: Config) -> Target:
        return target_of(config, self.timings())

    def timings(self) -> Timings:
        return Timings(**{field.name: getattr(self, field.name) for field in fields(Timings)})
