"""Run control in a real instance: drift detection and healing, retries of transient faults,
and the instance settings that keep one deploy at a time."""

from __future__ import annotations

import fcntl
import socket
import subprocess
import sys
import threading
import time

import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    ReexecutionOptions,
    execute_job,
    reconstructable,
)

from atl_pipeline.definitions import deploy_job, drift_job
from atl_pipeline.orchestration.dagster_adapter import runs_holding_pool
from atl_pipeline.orchestration.runner import deploy_subset, run_deploy, stages_until
from atl_pipeline.orchestration.stage import POOL
from atl_pipeline.project import Project
from atl_pipeline.runtime.caddy import base_config
from atl_pipeline.runtime.local import deployed_runtime
from tests.runtime_helpers import through_lb

pytestmark = pytest.mark.slow  # Dagster runs through Terraform and the deployed stack

NO_DRIFT = AssetCheckKey(AssetKey("service_deployment"), "no_drift")


def check_drift(project: Project, heal: bool = False):
    """Run the drift job as the schedule does; returns the check's evaluation."""
    instance = DagsterInstance.from_config(str(project.ensure_instance()))
    run_config = {"ops": {"service_deployment_no_drift": {"config": {"heal": heal}}},
                  "resources": {"project": {"config": {"root": str(project.root)}}}}
    with execute_job(reconstructable(drift_job), instance, run_config=run_config) as result:
        assert result.success
    (record,) = instance.event_log_storage.get_latest_asset_check_execution_by_key([NO_DRIFT]).values()
    return record.evaluation


def test_nothing_applied_yet_is_reported_as_drift(project: Project):
    assert run_deploy(project, stages=stages_until("validated_config")).success  # the check reads the validated config

    evaluation = check_drift(project)

    assert not evaluation.passed and "nothing was ever applied" in evaluation.description


def test_drift_is_a_failed_check_until_healed(project: Project):
    assert run_deploy(project, stages=stages_until("service_deployment")).success
    assert check_drift(project).passed

    runtime = deployed_runtime(project)
    group = runtime.deployed()["services"]["backend-api"]["group"]
    runtime.supervisor.rpc.stopProcess(f"{group}:{group}_1", True)
    runtime.caddy.load(base_config(runtime.lb))  # every route gone

    found = check_drift(project)
    assert not found.passed and found.severity.value == "ERROR"
    assert f"service backend-api: replica {group}_1 is STOPPED" in found.description
    assert "load balancer: its routes differ from the declared domains" in found.description
    assert through_lb(project, "api.allthingslinux.org").status != 200  # reported, not touched

    healed = check_drift(project, heal=True)
    assert not healed.passed and healed.severity.value == "WARN"
    assert healed.metadata["healed"].value == 2 and healed.metadata["runtime"].value == 0
    assert through_lb(project, "api.allthingslinux.org").status == 200
    assert check_drift(project).passed


def test_a_transient_fault_is_retried_with_backoff(project: Project, monkeypatch: pytest.MonkeyPatch):
    """Another process holds the project lock past the lock timeout; the plan stage fails, is
    retried after its delay, and succeeds once the lock is free."""
    monkeypatch.setenv("ATL_LOCK_TIMEOUT", "1")
    project.state_dir.mkdir(parents=True, exist_ok=True)
    holder = (project.state_dir / "lock").open("w")
    fcntl.flock(holder, fcntl.LOCK_EX)
    instance = DagsterInstance.from_config(str(project.ensure_instance()))

    def release_once_a_retry_is_scheduled() -> None:
        while not any(instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY).records
                      for run in instance.get_runs()):
            time.sleep(0.05)
        holder.close()  # closing the file releases the lock

    threading.Thread(target=release_once_a_retry_is_scheduled, daemon=True).start()
    with execute_job(deploy_subset(stages_until("terraform_plan")), instance, run_config={
            "resources": {"project": {"config": {"root": str(project.root)}}}}) as result:
        assert result.success
        retried = [e.step_key for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert retried == ["terraform_plan"]


def test_the_instance_runs_one_deploy_at_a_time(project: Project):
    instance = DagsterInstance.from_config(str(project.ensure_instance()))
    pools = instance.get_concurrency_config().pool_config
    assert (pools.pool_granularity.value, pools.default_pool_limit) == ("run", 1)
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
    assert not instance.run_retries_retry_on_asset_or_op_failure
    assert {node.definition.pool for node in deploy_job().graph.nodes} == {"atl-deploy"}


def test_a_cli_run_waits_for_the_run_in_progress(project: Project):
    """The daemon's queue does not hold runs executed in-process: the CLI waits for them."""
    instance = DagsterInstance.from_config(str(project.ensure_instance()))
    first = subprocess.Popen([sys.executable, "-m", "atl_pipeline.cli", "infra", "up"], stdout=subprocess.DEVNULL)
    while not instance.get_runs():
        time.sleep(0.05)
    waited: list[str] = []
    assert run_deploy(project, on_wait=waited.append).success
    assert first.wait(timeout=120) == 0
    (earlier, later) = sorted(instance.get_runs(), key=lambda run: instance.get_run_record_by_id(run.run_id).start_time)
    assert waited == [f"waiting for run {earlier.run_id} (deploy) to finish"]
    # the pool marks both, as the adapter finds them (pinned here to the installed Dagster)
    assert [run.run_id for run in runs_holding_pool(instance, POOL, [DagsterRunStatus.SUCCESS])] == [
        later.run_id, earlier.run_id]
    assert (instance.get_run_record_by_id(earlier.run_id).end_time
            <= instance.get_run_record_by_id(later.run_id).start_time)


def test_a_failed_stage_runs_again_from_failure_once_the_cause_is_fixed(project: Project):
    assert run_deploy(project).success
    record = deployed_runtime(project).deployed()["services"]["backend-api"]
    standby = record["standby_ports" if record["slot"] == 0 else "ports"][0]
    project.domains_file.write_text(project.domains_file.read_text().replace("backend-api:1.0.0", "backend-api:1.1.0"))
    squatter = socket.create_server(("127.0.0.1", standby))  # another program took the port the roll needs
    stages = []

    failed = run_deploy(project, on_stage=stages.append)

    assert not failed.success
    failure = next(s for s in stages if s.status == "failed")
    assert failure.stage == "service_deployment" and "exited while starting" in failure.detail
    assert through_lb(project, "api.allthingslinux.org").status == 200  # the old release still serves

    squatter.close()
    instance = DagsterInstance.from_config(str(project.ensure_instance()))
    with execute_job(reconstructable(deploy_job), instance, reexecution_options=ReexecutionOptions.from_failure(
            failed.run_id, instance)) as result:
        assert result.success
        executed = [e.step_key for e in result.all_events if e.event_type == DagsterEventType.STEP_SUCCESS]
    assert executed == ["service_deployment", "health_check", "monitoring", "certificates"]
    assert deployed_runtime(project).deployed()["services"]["backend-api"]["release"] != record["release"]
