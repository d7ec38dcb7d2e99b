"""A run deploys what its record says: each run's stage outputs are its own, and a re-execution
loads its parent's (atl_pipeline/orchestration/run_outputs.py), in a real instance."""

from __future__ import annotations

import os
from pathlib import Path

from dagster import AssetKey, DagsterInstance, ReexecutionOptions, execute_job

from atl_pipeline.orchestration import run_outputs
from atl_pipeline.orchestration.runner import deploy_subset
from atl_pipeline.project import Project

BROKEN = ('service: "backend-api"', 'service: "backend-apix"')


def run(project: Project, stages: list[str], parent: str | None = None):
    instance = DagsterInstance.from_config(str(project.ensure_instance()))
    config = {"resources": {"project": {"config": {"root": str(project.root)}}}}
    options = ReexecutionOptions.from_failure(parent, instance) if parent else None
    with execute_job(deploy_subset(stages), instance, run_config=None if parent else config,
                     reexecution_options=options, raise_on_error=False) as result:
        return result


def findings(result) -> list[str]:
    return [event.step_failure_data.user_failure_data.description for event in result.all_events
            if event.is_step_failure and event.step_failure_data.user_failure_data]


def test_a_re_execution_from_failure_loads_its_parents_input_not_the_newest(project: Project):
    text = project.domains_file.read_text()
    project.domains_file.write_text(text.replace(*BROKEN))
    broken = run(project, ["domain_config", "validated_config"])
    assert not broken.success and "backend-apix" in findings(broken)[0]

    project.domains_file.write_text(text)  # fixed; the file sensor's run deploys it
    assert run(project, ["domain_config", "validated_config"]).success

    again = run(project, ["domain_config", "validated_config"], parent=broken.run_id)

    assert not again.success  # the broken file again, which its parent read, not the fixed one
    assert "backend-apix" in findings(again)[0]
    loaded = [event for event in again.all_events if event.event_type_value == "LOADED_INPUT"]
    assert [event.event_specific_data.metadata["from run"].value for event in loaded] == [broken.run_id]


def test_a_stage_alone_loads_the_latest_materialization_and_its_re_execution_the_same(project: Project):
    assert run(project, ["domain_config"]).success
    first = DagsterInstance.from_config(str(project.ensure_instance())).get_latest_materialization_event(
        AssetKey("domain_config")).run_id
    project.domains_file.write_text(project.domains_file.read_text().replace(*BROKEN))
    alone = run(project, ["validated_config"])  # loads domain_config from `first`: a valid file
    assert alone.success

    assert run(project, ["domain_config"]).success  # a newer domain_config, of the broken file
    step = alone.dagster_run.step_keys_to_execute
    instance = DagsterInstance.from_config(str(project.ensure_instance()))
    with execute_job(deploy_subset(["validated_config"]), instance, raise_on_error=False,
                     reexecution_options=ReexecutionOptions(alone.run_id, step_selection=step)) as again:
        assert again.success  # still the valid domain_config `alone` loaded
        loaded = [e for e in again.all_events if e.event_type_value == "LOADED_INPUT"]
        assert loaded[0].event_specific_data.metadata["from run"].value == first


def test_an_output_no_longer_kept_is_named_with_what_to_do(project: Project):
    earlier = run(project, ["domain_config", "validated_config"])
    assert earlier.success
    instance = DagsterInstance.from_config(str(project.ensure_instance()))
    storage = Path(instance.storage_directory()) / "outputs"
    for file in (storage / earlier.run_id).iterdir():
        file.unlink()
    with execute_job(deploy_subset(["domain_config", "validated_config"]), instance, raise_on_error=False,
                     reexecution_options=ReexecutionOptions(earlier.run_id, step_selection=["validated_config"])
                     ) as again:
        assert not again.success
        assert f"the output of domain_config by run {earlier.run_id} is no longer kept" in findings(again)[0]


def test_pruning_keeps_the_newest_runs_and_each_stages_newest_output(tmp_path: Path):
    for number in range(6):
        folder = tmp_path / f"run{number}"
        folder.mkdir()
        (folder / ("rare" if number == 0 else "common")).write_bytes(b"x")
        os.utime(folder, (number, number))

    run_outputs.prune(tmp_path, keep=2)

    assert sorted(folder.name for folder in tmp_path.iterdir()) == ["run0", "run4", "run5"]
