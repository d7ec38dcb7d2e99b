"""Backups: the `backup` job materializes `backups` (atl_pipeline.operations.backup), on the `backup`
schedule (the cron of `backup.schedule` in the project's domains.yml, read when Dagster loads the code
location) or from `atl utils backup`. In the deploy pool: never while a deploy runs.
"""

import os

import dagster as dg
from dagster import AssetIn, Failure, MaterializeResult, asset

from atl_pipeline.config import load_config
from atl_pipeline.config.model import Backup
from atl_pipeline.findings import ConfigError
from atl_pipeline.operations.backup import back_up
from atl_pipeline.orchestration.hooks import STAGE_LINES
from atl_pipeline.orchestration.resources import ProjectResource
from atl_pipeline.orchestration.stage import POOL, metadata, stage_errors
from atl_pipeline.project import Project
from atl_pipeline.report import backup_metadata
from atl_pipeline.validation import ValidatedConfig

BACKUP_JOB = "backup"


@asset(group_name="operations", kinds={"restic"}, pool=POOL, ins={"validated_config": AssetIn("validated_config")})
def backups(context: dg.AssetExecutionContext, validated_config: ValidatedConfig,
            project: ProjectResource) -> MaterializeResult:
    """A restic snapshot of what recovers the platform (Terraform's state, the Dagster instance, Caddy's CA,
    the deployment record, the services' volumes), the retention applied, a sample of the data checked;
    as the deployed domains.yml's `backup:` says."""
    config = validated_config.loaded.config
    if config.backup is None:
        raise Failure("the deployed domains.yml has no backup section: add one (docs/operating.md#backups) "
                      "and deploy it", allow_retries=False)
    with stage_errors():
        report = back_up(project.as_project(), config, os.environ)
    return MaterializeResult(metadata=metadata(context, backup_metadata(report, config.backup)))


backup_job = dg.define_asset_job(BACKUP_JOB, selection=[backups],
                                 description="Back up what recovers the platform with restic, and check it.",
                                 hooks=STAGE_LINES)


@dg.definitions
def backup_definitions() -> dg.Definitions:
    settings = _settings(Project.from_env())
    schedule = dg.ScheduleDefinition(
        name="backup", job=backup_job, cron_schedule=settings.schedule if settings else Backup.model_fields[
            "schedule"].default, execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if settings else dg.DefaultScheduleStatus.STOPPED,
        description="The `backup` job at `backup.schedule` (read when the code location loads); off while "
                    "domains.yml has no backup section.")
    return dg.Definitions(assets=[backups], jobs=[backup_job], schedules=[schedule])


def _settings(project: Project) -> Backup | None:
    try:
        return load_config(project.domains_file).config.backup
    except (ConfigError, OSError):
        return None
