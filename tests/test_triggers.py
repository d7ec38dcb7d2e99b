"""Every run says truthfully how it started: `atl/trigger`, and each stage's `trigger` metadata."""

from __future__ import annotations

import pytest
from dagster import AssetKey, DagsterInstance, ReexecutionOptions, execute_job

from atl_pipeline.orchestration.runner import deploy_subset
from atl_pipeline.orchestration.triggers import trigger_of
from atl_pipeline.project import Project


@pytest.mark.parametrize("tags, trigger", [
    ({"dagster/from_ui": "true"}, "ui"),
    ({"dagster/sensor_name": "git_push", "atl/trigger": "git"}, "git"),
    ({"dagster/sensor_name": "domains_file_changed", "atl/trigger": "file"}, "file"),
    ({"dagster/sensor_name": "atl_automation", "dagster/from_automation_condition": "true",
      "atl/trigger": "automation"}, "automation"),
    ({"dagster/schedule_name": "drift_check"}, "schedule"),
    ({"dagster/backfill": "abc", "dagster/from_ui": "true"}, "backfill"),
    ({"atl/trigger": "cli"}, "cli"),
    ({}, "api"),
    # a re-execution inherits its parent's tags, the sensor's and the UI's included
    ({"dagster/parent_run_id": "1f2e", "dagster/sensor_name": "domains_file_changed", "atl/trigger": "file",
      "dagster/from_ui": "true"}, "re-execution of 1f2e"),
])
def test_how_a_run_started_is_told_from_its_tags(tags, trigger):
    assert trigger_of(tags) == trigger


def test_a_re_execution_is_tagged_as_one_not_as_its_parent(project: Project):
    instance = DagsterInstance.from_config(str(project.ensure_instance()))
    job = deploy_subset(["domain_config"])
    config = {"resources": {"project": {"config": {"root": str(project.root)}}}}
    with execute_job(job, instance, run_config=config, tags={"atl/trigger": "file"}) as parent:
        assert parent.success
    with execute_job(job, instance, run_config=config,
                     reexecution_options=ReexecutionOptions(parent.run_id, step_selection=["domain_config"])) as child:
        assert child.success

    assert instance.get_run_by_id(parent.run_id).tags["atl/trigger"] == "file"
    assert instance.get_run_by_id(child.run_id).tags["atl/trigger"] == f"re-execution of {parent.run_id}"
    event = instance.get_latest_materialization_event(AssetKey("domain_config"))
    assert event.run_id == child.run_id
    assert event.asset_materialization.metadata["trigger"].value == f"re-execution of {parent.run_id}"
