"""The deploy job (every stage, from domains.yml to a running, monitored stack) and the
automation sensor that runs the later stages after one materialized alone."""

from __future__ import annotations

import dagster as dg

from atl_pipeline.orchestration.hooks import STAGE_LINES
from atl_pipeline.orchestration.stage import DEPLOY_JOB, GROUP
from atl_pipeline.orchestration.triggers import TRIGGER_TAG

deploy_job = dg.define_asset_job(
    DEPLOY_JOB,
    selection=dg.AssetSelection.groups(GROUP) - dg.AssetSelection.checks(
        dg.AssetCheckKey(dg.AssetKey("service_deployment"), "no_drift")),
    description="Every stage, from domains.yml to a running, monitored stack.", hooks=STAGE_LINES)

automation = dg.AutomationConditionSensorDefinition(
    "atl_automation", target=dg.AssetSelection.groups(GROUP), default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=5, run_tags={TRIGGER_TAG: "automation"},
    description="Runs the stages after one that was materialized alone (their automation conditions).")
