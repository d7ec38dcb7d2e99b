"""The Dagster code location: `dagster dev -w workspace.yaml` loads `defs`."""

from __future__ import annotations

from dagster import AssetSelection, Definitions, FilesystemIOManager, define_asset_job, in_process_executor

from atl_pipeline.orchestration.assets import (
    certificates,
    domain_config,
    health_check,
    monitoring,
    service_deployment,
    terraform_apply,
    terraform_plan,
    validated_config,
)
from atl_pipeline.orchestration.resources import ProjectResource
from atl_pipeline.orchestration.sensors import domains_file_sensor

DEPLOY_JOB = "deploy"

deploy = define_asset_job(DEPLOY_JOB, selection=AssetSelection.all(),
                          description="Every stage, from domains.yml to a running, monitored stack.")

defs = Definitions(
    assets=[domain_config, validated_config, terraform_plan, terraform_apply, service_deployment, health_check,
            monitoring, certificates],
    jobs=[deploy],
    sensors=[domains_file_sensor(deploy)],
    resources={"project": ProjectResource(), "io_manager": FilesystemIOManager()},
    executor=in_process_executor,
)


def deploy_job():
    """The deploy job, for `dagster.reconstructable` (the CLI runs it in-process)."""
    return defs.resolve_job_def(DEPLOY_JOB)
