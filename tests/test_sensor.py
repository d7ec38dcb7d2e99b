"""The domains.yml file sensor: one run per change of content, reverts included."""

from __future__ import annotations

import hashlib

from dagster import AssetKey, DagsterInstance, build_sensor_context, execute_job, reconstructable

from atl_pipeline.definitions import deploy_job, loaded
from atl_pipeline.orchestration.runner import run_deploy, stages_until
from atl_pipeline.project import Project


class Ticks:
    """Evaluates the sensor tick after tick, carrying its cursor as the daemon does."""

    def __init__(self, instance: DagsterInstance):
        self.sensor = loaded().resolve_sensor_def("domains_file_changed")
        self.instance = instance
        self.cursor: str | None = None

    def tick(self):
        context = build_sensor_context(instance=self.instance, cursor=self.cursor, resources=loaded().resources)
        result = self.sensor.evaluate_tick(context)
        self.cursor = result.cursor or self.cursor
        return result


def sha256(project: Project) -> str:
    return hashlib.sha256(project.domains_file.read_bytes()).hexdigest()


def test_one_run_per_distinct_content(project: Project):
    instance = DagsterInstance.from_config(str(project.ensure_instance()))
    ticks = Ticks(instance)
    original = project.domains_file.read_text()
    keys = []

    for content in (original, original, original + "# a comment\n", original + "# a comment\n", original):
        project.domains_file.write_text(content)
        result = ticks.tick()
        keys += [(request.run_key, request.tags["atl/sha256"]) for request in result.run_requests]
        if not result.run_requests:
            assert "unchanged" in result.skip_message

    first = hashlib.sha256(original.encode()).hexdigest()
    edited_sha = hashlib.sha256((original + "# a comment\n").encode()).hexdigest()
    assert keys == [(f"1:{first}", first), (f"2:{edited_sha}", edited_sha), (f"3:{first}", first)]


def test_the_requested_run_reads_the_watched_file(project: Project):
    instance = DagsterInstance.from_config(str(project.ensure_instance()))
    (request,) = Ticks(instance).tick().run_requests

    result = execute_job(reconstructable(deploy_job), instance, run_config=request.run_config, tags=request.tags,
                         asset_selection=[AssetKey("domain_config")])

    assert result.success
    materialized = instance.get_latest_materialization_event(AssetKey("domain_config")).asset_materialization
    assert materialized.metadata["sha256"].value == sha256(project)


def test_a_file_edited_after_its_run_was_requested_is_refused_by_that_run(project: Project):
    """The run deploys the content its tag names, or nothing: the next tick requests one for the new content."""
    instance = DagsterInstance.from_config(str(project.ensure_instance()))
    ticks = Ticks(instance)
    (request,) = ticks.tick().run_requests
    project.domains_file.write_text(project.domains_file.read_text() + "# edited meanwhile\n")

    result = execute_job(reconstructable(deploy_job), instance, run_config=request.run_config, tags=request.tags,
                         asset_selection=[AssetKey("domain_config")], raise_on_error=False)

    assert not result.success
    (failure,) = [event.step_failure_data.user_failure_data.description for event in result.all_events
                  if event.is_step_failure]
    assert f"changed after this run was started for its content sha256 {request.tags['atl/sha256'][:12]}" in failure
    assert instance.get_latest_materialization_event(AssetKey("domain_config")) is None
    (again,) = ticks.tick().run_requests
    assert again.tags["atl/sha256"] == sha256(project)


def test_content_already_deployed_is_not_deployed_again(project: Project):
    assert run_deploy(project, stages=stages_until("domain_config")).success
    ticks = Ticks(DagsterInstance.from_config(str(project.ensure_instance())))

    assert ticks.tick().run_requests == []
    project.domains_file.write_text(project.domains_file.read_text() + "# edited\n")
    assert [r.run_key for r in ticks.tick().run_requests] == [f"1:{sha256(project)}"]


def test_what_the_cli_deployed_while_the_sensor_watched_is_not_deployed_again(project: Project):
    """The UI started after `atl infra up`: the sensor has a cursor from before, the CLI has
    deployed a newer content since; that content counts as seen, an edit after it does not."""
    ticks = Ticks(DagsterInstance.from_config(str(project.ensure_instance())))
    assert len(ticks.tick().run_requests) == 1  # the sensor's first content, deployed by the daemon
    project.domains_file.write_text(project.domains_file.read_text() + "# deployed from the terminal\n")
    assert run_deploy(project, stages=stages_until("domain_config")).success

    assert ticks.tick().run_requests == []
    project.domains_file.write_text(project.domains_file.read_text() + "# edited\n")
    assert [r.run_key for r in ticks.tick().run_requests] == [f"2:{sha256(project)}"]


def test_a_missing_file_is_skipped_not_failed(project: Project):
    project.domains_file.unlink()
    result = Ticks(DagsterInstance.from_config(str(project.ensure_instance()))).tick()
    assert result.run_requests == [] and "No such file or directory" in result.skip_message
