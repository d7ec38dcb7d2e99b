"""The Dagster assets in a real instance: materialization, metadata, the blocking check,
and a stage re-materialized alone from the stored output of the stage before it."""

from __future__ import annotations

import hashlib

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance, materialize

from atl_pipeline.defs.config_stages import domain_config, validated_config
from atl_pipeline.orchestration.runner import run_deploy
from atl_pipeline.project import Project
from tests.dagster_helpers import stage_resources
from tests.runtime_helpers import clash_ports


def instance_of(project: Project) -> DagsterInstance:
    return DagsterInstance.from_config(str(project.ensure_instance()))


def latest_metadata(instance: DagsterInstance, key: str) -> dict:
    event = instance.get_latest_materialization_event(AssetKey(key))
    return {name: value.value for name, value in event.asset_materialization.metadata.items()}


@pytest.mark.slow
def test_a_deploy_run_materializes_both_stages_with_metadata(project: Project):
    stages = []
    outcome = run_deploy(project, on_stage=stages.append)

    assert outcome.success and outcome.status == "SUCCESS"
    assert [(s.stage, s.status) for s in stages] == [
        ("domain_config", "ok"), ("validated_config", "ok"), ("terraform_plan", "ok"), ("terraform_apply", "ok"),
        ("service_deployment", "ok"), ("health_check", "ok"), ("monitoring", "ok"), ("certificates", "ok")]
    assert stages[0].detail == "3 domains, 2 services"
    instance = instance_of(project)
    run = instance.get_run_by_id(outcome.run_id)
    assert run.job_name == "deploy" and run.tags["atl/trigger"] == "cli"
    config_meta = latest_metadata(instance, "domain_config")
    assert config_meta["sha256"] == hashlib.sha256(project.domains_file.read_bytes()).hexdigest()
    assert (config_meta["domains"], config_meta["services"]) == (3, 2)
    assert "| api.allthingslinux.org | backend-api | 3 | 500m | 512Mi | yes | yes |" in config_meta["domain_table"]
    assert latest_metadata(instance, "validated_config")["findings"] == 0
    (check,) = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [AssetCheckKey(AssetKey("validated_config"), "valid")]).values()
    assert check.evaluation.passed


def test_a_failing_validation_stops_later_stages_in_the_same_run(project: Project):
    clashing = clash_ports(project)
    stages = []

    outcome = run_deploy(project, on_stage=stages.append)

    assert not outcome.success
    assert [(s.stage, s.status) for s in stages] == [
        ("domain_config", "ok"), ("validated_config:valid", "check failed"), ("validated_config", "failed"),
        ("terraform_plan", "skipped"), ("terraform_apply", "skipped"), ("service_deployment", "skipped"),
        ("health_check", "skipped"), ("monitoring", "skipped"), ("certificates", "skipped")]
    assert f"both use port {clashing}" in stages[1].detail
    assert not (project.state_dir / "terraform").exists()


@pytest.mark.slow
def test_a_stage_rematerialized_alone_loads_its_input_from_the_last_run(project: Project):
    assert run_deploy(project).success
    first = hashlib.sha256(project.domains_file.read_bytes()).hexdigest()
    project.domains_file.write_text(project.domains_file.read_text() + "# edited after the run\n")

    result = materialize([domain_config, validated_config], selection=[validated_config],
                         instance=instance_of(project), resources=_resources(project))

    assert result.success
    assert result.asset_materializations_for_node("domain_config") == []
    assert result.output_for_node("validated_config").loaded.source.sha256 == first


def test_a_broken_file_fails_the_first_stage_with_located_findings(project: Project):
    project.domains_file.write_text("domains:\n  - name: api.example.org\n    service: api\n    replica: 2\n")
    stages = []
    outcome = run_deploy(project, on_stage=stages.append)

    assert not outcome.success
    assert [(s.stage, s.status) for s in stages] == [
        ("domain_config", "failed"), ("validated_config", "skipped"), ("terraform_plan", "skipped"),
        ("terraform_apply", "skipped"), ("service_deployment", "skipped"), ("health_check", "skipped"),
        ("monitoring", "skipped"), ("certificates", "skipped")]
    assert "domains.yml:4:5: domains[0]: unknown field 'replica'; did you mean 'replicas'?" in stages[0].detail


def _resources(project: Project) -> dict:
    return stage_resources(project)
