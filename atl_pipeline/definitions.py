"""The Dagster code location: `dagster dev -w workspace.yaml` loads `defs`."""

from __future__ import annotations

import os

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    Definitions,
    FilesystemIOManager,
    ScheduleDefinition,
    define_asset_job,
    in_process_executor,
)

from atl_pipeline.orchestration.assets import (
    certificates,
    domain_config,
    health_check,
    monitoring,
    no_drift,
    service_deployment,
    terraform_apply,
    terraform_plan,
    validated_config,
)
from atl_pipeline.orchestration.resources import ProjectResource
from atl_pipeline.orchestration.sensors import domains_file_sensor, git_push_sensor

DEPLOY_JOB = "deploy"
DRIFT_JOB = "drift"

deploy = define_asset_job(DEPLOY_JOB, selection=AssetSelection.groups("deploy") - AssetSelection.checks(no_drift),
                          description="Every stage, from domains.yml to a running, monitored stack.")
drift = define_asset_job(DRIFT_JOB, selection=AssetSelection.checks(no_drift),
                         description="Compare what runs with the last apply; heal when configured to.")
# ATL_DRIFT_HEAL=true makes the scheduled drift check redeploy what it finds missing
heal = os.environ.get("ATL_DRIFT_HEAL") == "true"
drift_schedule = ScheduleDefinition(
    name="drift_check", job=drift, cron_schedule=os.environ.get("ATL_DRIFT_SCHEDULE", "*/10 * * * *"),
    run_config={"ops": {"service_deployment_no_drift": {"config": {"heal": heal}}}},
    default_status=DefaultScheduleStatus.RUNNING)

defs = Definitions(
    assets=[domain_config, validated_config, terraform_plan, terraform_apply, service_deployment, health_check,
            monitoring, certificates],
    asset_checks=[no_drift],
    jobs=[deploy, drift],
    schedules=[drift_schedule],
    sensors=[git_push_sensor(deploy), domains_file_sensor(deploy)],
    resources={"project": ProjectResource(), "io_manager": FilesystemIOManager()},
    executor=in_process_executor,
)


def deploy_job():
    """The deploy job, for `dagster.reconstructable` (the CLI runs it in-process)."""
    return defs.resolve_job_def(DEPLOY_JOB)


def drift_job():
    """The drift job, for `dagster.reconstructable`."""
    return defs.resolve_job_def(DRIFT_JOB)
