"""Drift: what runs and what Terraform manages, compared with the last apply on a schedule
(atl_pipeline.operations.drift); with ATL_DRIFT_HEAL=true the check deploys the last apply's outputs again.
"""

import os

import dagster as dg
from dagster import AssetCheckResult, AssetCheckSeverity, AssetIn, Config, asset_check

from atl_pipeline.defs.runtime_stages import service_deployment
from atl_pipeline.operations import drift
from atl_pipeline.orchestration.hooks import STAGE_LINES
from atl_pipeline.orchestration.resources import ProjectResource, TargetResource
from atl_pipeline.orchestration.stage import POOL, recorded_trigger, stage_errors, to_metadata
from atl_pipeline.report import drift_metadata
from atl_pipeline.validation import ValidatedConfig

DRIFT_JOB = "drift"
DEFAULT_SCHEDULE = "*/10 * * * *"


class DriftOptions(Config):
    heal: bool = False
    """Deploy Terraform's outputs again when what runs differs from them."""


@asset_check(asset=service_deployment, additional_ins={"validated_config": AssetIn("validated_config")}, pool=POOL,
             description="What runs and what Terraform manages match the last apply (a refresh-only plan, and "
                         "the target against Terraform's outputs). Evaluated by the drift schedule.")
def no_drift(context: dg.AssetCheckExecutionContext, config: DriftOptions, validated_config: ValidatedConfig,
             project: ProjectResource, target: TargetResource) -> AssetCheckResult:
    trigger = recorded_trigger(context)  # first: a drift run that fails says how it started too
    with stage_errors():
        report = drift.detect(project.as_project(), target.of(validated_config.loaded.config), heal=config.heal)
    healed_all = report.healed and not (report.terraform or report.runtime)
    return AssetCheckResult(
        passed=not report.drifted, severity=AssetCheckSeverity.WARN if healed_all else AssetCheckSeverity.ERROR,
        description="; ".join(report.lines()) or "what runs matches the last apply",
        metadata={"trigger": trigger, **to_metadata(drift_metadata(report))})


drift_job = dg.define_asset_job(DRIFT_JOB, selection=dg.AssetSelection.checks(no_drift),
                                description="Compare what runs with the last apply; heal when configured to.",
                                hooks=STAGE_LINES)


@dg.definitions
def drift_definitions() -> dg.Definitions:
    """The check, its job, and its schedule: every ten minutes (ATL_DRIFT_SCHEDULE, a cron
    expression), healing with ATL_DRIFT_HEAL=true; both read when Dagster loads the code location."""
    heal = os.environ.get("ATL_DRIFT_HEAL") == "true"
    schedule = dg.ScheduleDefinition(
        name="drift_check", job_name=DRIFT_JOB, cron_schedule=os.environ.get("ATL_DRIFT_SCHEDULE", DEFAULT_SCHEDULE),
        run_config={"ops": {"service_deployment_no_drift": {"config": {"heal": heal}}}},
        default_status=dg.DefaultScheduleStatus.RUNNING)
    return dg.Definitions(asset_checks=[no_drift], jobs=[drift_job], schedules=[schedule])
