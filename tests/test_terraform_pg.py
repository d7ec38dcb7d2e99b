"""Terraform state in a real PostgreSQL (the built-in pg backend): the lock serializes
applies from different machines, the state stays whole, and the connection string,
a secret, never shows."""

from __future__ import annotations

import itertools
import json
import threading
import time
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance

from atl_pipeline.cli import main
from atl_pipeline.config import load_config
from atl_pipeline.orchestration.runner import run_deploy, stages_until
from atl_pipeline.project import Project
from atl_pipeline.terraform.stages import TerraformApply, apply_plan, make_plan, terraform
from atl_pipeline.validation import validate
from tests.conftest import copy_project
from tests.ports import service_ports
from tests.terraform_helpers import BackgroundApply, held_lock, use_pg, wait_for_terraform_in
from tests.test_secrets import readable

pytestmark = pytest.mark.slow  # Terraform on a PostgreSQL server

API_PORT, WEB_PORT = service_ports()  # the example's services' first ports in this test process

CANARY = "canary-Zq8vX3pL"
SECRET_ENV = "ATL_TEST_PG_CONN"
_schemas = itertools.count()


@pytest.fixture
def pg_url(postgres, monkeypatch: pytest.MonkeyPatch) -> str:
    """A connection string with a canary password (trust authentication ignores it)."""
    url = f"postgres://postgres:{CANARY}@127.0.0.1:{postgres.port}/postgres?sslmode=disable"
    monkeypatch.setenv(SECRET_ENV, url)
    return url


def plan(project: Project, name: str):
    return make_plan(project, validate(load_config(project.domains_file)), name)


def test_state_lives_in_postgresql_and_the_secret_never_shows(project: Project, pg_url, postgres, capfd):
    schema = f"atl_state_{next(_schemas)}"
    use_pg(project, SECRET_ENV, schema)

    outcome = run_deploy(project)

    assert outcome.success
    state = json.loads(postgres.query(f"SELECT data FROM {schema}.states WHERE name = 'default'"))
    assert sorted(r["name"] for r in state["resources"]) == ["domain", "service"]
    assert not (project.state_dir / "terraform" / "production" / "terraform.tfstate").exists()

    instance = DagsterInstance.from_config(str(project.dagster_home))
    logged = "\n".join(entry.to_json() for entry in instance.all_logs(outcome.run_id))
    assert "terraform_plan" in logged and CANARY not in logged
    assert main(["infra", "plan"]) == 0 and main(["infra", "drift", "--json"]) == 0
    out, err = capfd.readouterr()
    assert CANARY not in out + err
    assert "no changes" in out, out
    redactions = project.state_dir / "runtime" / "collector" / "secrets.conf"  # what the log collector masks
    assert redactions.stat().st_mode & 0o777 == 0o600
    for path in project.root.rglob("*"):
        if path.is_file() and path != redactions:
            assert CANARY.encode() not in readable(path), path


def test_a_failing_connection_reports_without_the_secret(project: Project, postgres, monkeypatch):
    """A database that does not exist: refused at once, not retried (only an unreachable backend is)."""
    monkeypatch.setenv(SECRET_ENV, f"postgres://postgres:{CANARY}@127.0.0.1:{postgres.port}/nowhere?sslmode=disable")
    use_pg(project, SECRET_ENV, "atl_unreachable")
    stages = []

    outcome = run_deploy(project, on_stage=stages.append)

    failed = next(s for s in stages if s.status == "failed")
    assert (outcome.success, failed.stage) == (False, "terraform_plan")
    assert "terraform init failed" in failed.detail and '"nowhere" does not exist' in failed.detail
    assert CANARY not in failed.detail and retries(project, outcome.run_id) == []
    instance = DagsterInstance.from_config(str(project.dagster_home))
    assert CANARY not in "\n".join(entry.to_json() for entry in instance.all_logs(outcome.run_id))


def test_a_missing_secret_names_the_variable_to_set(project: Project, monkeypatch):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    use_pg(project, SECRET_ENV, "atl_unset")
    stages = []
    assert not run_deploy(project, on_stage=stages.append).success
    failed = next(s for s in stages if s.status == "failed")
    assert f"env:{SECRET_ENV} is not set: export {SECRET_ENV}" in failed.detail


def test_applies_from_two_machines_wait_for_each_other(tmp_path: Path, pg_url):
    schema = f"atl_state_{next(_schemas)}"
    first, second = copy_project(tmp_path / "first"), copy_project(tmp_path / "second")
    for project in (first, second):
        use_pg(project, SECRET_ENV, schema)
    first_plan = plan(first, "first")
    runner = terraform(first, first_plan.state, "production")
    runner.apply(first_plan.plan_file)
    assert runner.outputs()["services"]["website"]["ports"] == [WEB_PORT, WEB_PORT + 1]
    second.domains_file.write_text(second.domains_file.read_text().replace("replicas: 2", "replicas: 3"))
    second_plan = plan(second, "second")
    assert len(second_plan.summary.changes) == 3

    with held_lock(first_plan.workdir, env={"PG_CONN_STR": pg_url}) as lock:
        waiting = BackgroundApply(second, second_plan)
        wait_for_terraform_in(second_plan.workdir, "apply")
    applied = waiting.join()

    assert isinstance(applied, TerraformApply) and applied.applied, applied
    assert waiting.finished_at > lock.released_at, "the apply did not wait for the lock"
    assert runner.outputs()["services"]["website"]["ports"] == [WEB_PORT, WEB_PORT + 1, WEB_PORT + 2]
    assert plan(second, "again").summary.changes == ()


def test_the_same_files_over_a_state_no_one_moved_plan_nothing_and_another_machine_moving_it_plans(
        tmp_path: Path, pg_url):
    schema = f"atl_state_{next(_schemas)}"
    first, second = copy_project(tmp_path / "first"), copy_project(tmp_path / "second")
    for project in (first, second):
        use_pg(project, SECRET_ENV, schema)
    applied = apply_plan(first, plan(first, "first"))
    assert plan(first, "again").unchanged  # not planned: the state's serial read back from PostgreSQL

    second.domains_file.write_text(second.domains_file.read_text().replace("replicas: 2", "replicas: 3"))
    assert apply_plan(second, plan(second, "second")).serial > applied.serial

    moved = plan(first, "moved")  # the same files, but the state moved on another machine
    assert not moved.unchanged and len(moved.summary.changes) == 3


def test_concurrent_applies_of_plans_from_one_state_let_exactly_one_win(tmp_path: Path, pg_url):
    schema = f"atl_state_{next(_schemas)}"
    projects = [copy_project(tmp_path / name) for name in ("left", "right")]
    for project in projects:
        use_pg(project, SECRET_ENV, schema)
    text = projects[1].domains_file.read_text()
    projects[1].domains_file.write_text(text.replace("monitoring: true", "monitoring: false"))
    plans = [plan(project, "race") for project in projects]

    runs = [BackgroundApply(project, p) for project, p in zip(projects, plans, strict=True)]
    outcomes = [run.join() for run in runs]
    assert sorted(type(o).__name__ for o in outcomes) == ["StalePlan", "TerraformApply"]
    winner = projects[[isinstance(o, TerraformApply) for o in outcomes].index(True)]
    assert plan(winner, "after").summary.changes == ()  # the state is whole: exactly the winner's


def test_postgresql_down_as_an_apply_starts_is_retried_and_the_run_converges(project: Project, pg_url, postgres):
    """PostgreSQL restarting: down when the apply starts, back once that attempt failed. (A restart
    at a random moment of an apply may also land on the state's write, which is StateNotSaved and
    never retried: bench/reliability.py measures that case.)"""
    schema = f"atl_state_{next(_schemas)}"
    use_pg(project, SECRET_ENV, schema)
    assert run_deploy(project, stages=stages_until("terraform_apply")).success
    project.domains_file.write_text(project.domains_file.read_text().replace("replicas: 2", "replicas: 3"))
    assert run_deploy(project, stages=stages_until("terraform_plan")).success
    workdir = project.state_dir / "terraform" / "production"

    def back_once_the_first_attempt_failed() -> None:
        try:
            attempt = Path(f"/proc/{wait_for_terraform_in(workdir, 'apply')}")
            while attempt.exists():
                time.sleep(0.01)
        finally:
            postgres.resume()  # the next tests share this server

    postgres.pause()
    restarter = threading.Thread(target=back_once_the_first_attempt_failed)
    restarter.start()
    stages = []
    outcome = run_deploy(project, stages=["terraform_apply"], on_stage=stages.append)
    restarter.join()

    assert outcome.success, [(s.stage, s.status, s.detail) for s in stages]
    retried = retries(project, outcome.run_id)
    assert retried and {stage for stage, _ in retried} == {"terraform_apply"}, retried
    assert all("could not reach the pg state backend" in error and CANARY not in error for _, error in retried)
    after = plan(project, "after")
    assert after.summary.changes == ()
    assert terraform(project, after.state, "production").outputs()["services"]["website"]["replicas"] == 3


def test_a_hung_lock_holder_is_reported_with_its_session_and_never_forced(project: Project, pg_url, postgres,
                                                                          monkeypatch):
    schema = f"atl_state_{next(_schemas)}"
    use_pg(project, SECRET_ENV, schema)
    assert run_deploy(project, stages=stages_until("terraform_apply")).success
    monkeypatch.setenv("ATL_LOCK_TIMEOUT", "2")
    held = "SELECT pid FROM pg_locks WHERE locktype = 'advisory'"
    # a change to plan: the same files over the same state would not plan (nor lock) at all
    project.domains_file.write_text(project.domains_file.read_text().replace("replicas: 2", "replicas: 3"))

    with held_lock(project.state_dir / "terraform" / "production", env={"PG_CONN_STR": pg_url}):
        holder = postgres.query(held)
        stages = []
        outcome = run_deploy(project, on_stage=stages.append, stages=stages_until("terraform_apply"))
        failed = next(s for s in stages if s.status == "failed")
        assert (outcome.success, failed.stage) == (False, "terraform_plan")
        assert "locked by another operation; waited 2s" in failed.detail
        assert "pg_terminate_backend" in failed.detail and CANARY not in failed.detail
        assert retries(project, outcome.run_id) == []  # it has waited; another attempt would only wait again
        assert postgres.query(held) == holder  # the lock is still the holder's

    assert run_deploy(project, stages=stages_until("terraform_apply")).success


def retries(project: Project, run_id: str) -> list[tuple[str, str]]:
    """(stage, error message) of each stage attempt of the run that failed and was retried."""
    instance = DagsterInstance.from_config(str(project.dagster_home))
    found = []
    for event in instance.all_logs(run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY):
        error = event.dagster_event.event_specific_data.error  # RetryRequestedFromPolicy, caused by the Failure
        found.append((event.step_key, (error.cause or error).message))
    return found
