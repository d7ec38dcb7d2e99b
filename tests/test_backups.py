"""Backups with the real restic, and a restore drill: the example deployed with a volume holding data,
backed up, `.atl/` destroyed, restored, and brought up again: Terraform plans no changes, the same CA
serves, the data and the run history are back. A wrong password or a missing repository changes
nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus

from atl_pipeline.defs.backup import backup_definitions
from atl_pipeline.project import Project
from atl_pipeline.runtime.local import deployed_runtime
from tests.runtime_helpers import wait_until_served
from tests.terraform_helpers import use_pg
from tests.test_cli import run

API = "api.allthingslinux.org"
VOLUME = "    volumes: {data: /var/lib/api}\n"


def with_backups(project: Project, repository: Path, extra: str = "") -> None:
    text = project.domains_file.read_text().replace("    health: {path: /healthz}\n",
                                                    "    health: {path: /healthz}\n" + VOLUME, 1)
    project.domains_file.write_text(text + f"\nbackup: {{repository: {repository}, password: env:ATL_TEST_RESTIC, "
                                    f"keep: {{daily: 1}}{extra}}}\n")


@pytest.mark.slow
def test_a_restore_drill_brings_back_state_ca_data_and_history(capsys, project: Project, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ATL_TEST_RESTIC", "correct horse battery staple")
    with_backups(project, tmp_path / "restic")
    assert run(capsys, "infra", "up")[0] == 0
    data = project.state_dir / "volumes" / "backend-api" / "data" / "blob"
    data.write_bytes(os.urandom(1 << 20))
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    old_root = tmp_path / "root.crt"
    shutil.copy(deployed_runtime(project).lb.ca_cert, old_root)
    history = {run.run_id for run in instance(project).get_runs()}

    code, out, _ = run(capsys, "utils", "backup", "--json")
    first = json.loads(out)
    assert code == 0 and first["ok"] and first["files"] > 10 and first["snapshots_removed"] == 0, first
    code, out, _ = run(capsys, "utils", "backup", "--json")
    assert code == 0 and json.loads(out)["snapshots_removed"] == 1  # keep: {daily: 1}
    code, out, _ = run(capsys, "utils", "snapshots", "--json")
    (snapshot,) = json.loads(out)

    assert run(capsys, "infra", "down")[0] == 0
    shutil.rmtree(project.state_dir)
    monkeypatch.setenv("ATL_TEST_RESTIC", "a wrong password")
    code, _, err = run(capsys, "utils", "restore")
    assert code == 1 and "does not open the repository" in err and not project.state_dir.exists()
    monkeypatch.setenv("ATL_TEST_RESTIC", "correct horse battery staple")

    code, out, _ = run(capsys, "utils", "restore", snapshot["id"], "--json")
    restored = json.loads(out)
    assert code == 0 and ".atl/volumes" in restored["restored"] and ".atl/dagster" in restored["restored"]
    code, out, _ = run(capsys, "infra", "plan", "--json")
    assert code == 0 and json.loads(out)["changes"] == []  # the restored state is what domains.yml declares
    assert run(capsys, "infra", "up")[0] == 0
    assert hashlib.sha256(data.read_bytes()).hexdigest() == digest
    runtime = deployed_runtime(project)
    assert runtime.lb.ca_cert.read_bytes() == old_root.read_bytes()
    wait_until_served(project, API)  # verified against the CA of before
    runs = {run.run_id: run for run in instance(project).get_runs()}
    assert history <= runs.keys()
    (backup,) = [runs[run_id] for run_id in restored["runs_canceled"]]  # the second backup, caught in its snapshot
    assert backup.job_name == "backup" and backup.status == DagsterRunStatus.CANCELED


@pytest.mark.slow
def test_a_missing_repository_is_named_and_nothing_changes(capsys, project: Project, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ATL_TEST_RESTIC", "correct horse battery staple")
    with_backups(project, tmp_path / "nowhere")
    code, _, err = run(capsys, "utils", "restore")
    assert code == 1 and f"there is no restic repository at {tmp_path / 'nowhere'}" in err
    assert not project.state_dir.exists()
    code, _, err = run(capsys, "utils", "snapshots")
    assert code == 1 and "there is no restic repository" in err


@pytest.mark.slow
def test_a_lost_postgresql_state_is_loaded_from_the_snapshot_and_a_present_one_kept(
        capsys, project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres):
    monkeypatch.setenv("ATL_TEST_RESTIC", "correct horse battery staple")
    monkeypatch.setenv("ATL_TEST_BACKUP_PG", f"postgres://postgres:pw@127.0.0.1:{postgres.port}/postgres"
                                             "?sslmode=disable")
    use_pg(project, "ATL_TEST_BACKUP_PG", "atl_backup_drill")
    with_backups(project, tmp_path / "restic")
    assert run(capsys, "infra", "apply", "--yes")[0] == 0
    assert run(capsys, "utils", "backup")[0] == 0
    assert run(capsys, "infra", "down")[0] == 0

    postgres.query("DROP SCHEMA atl_backup_drill CASCADE")  # the database lost the state
    code, out, _ = run(capsys, "utils", "restore", "--json")
    assert code == 0 and json.loads(out)["state"].startswith("loaded the snapshot's state"), out
    code, out, _ = run(capsys, "infra", "plan", "--json")
    assert code == 0 and json.loads(out)["changes"] == []
    code, out, _ = run(capsys, "utils", "restore", "--json")
    assert code == 0 and json.loads(out)["state"] == ("kept the state in PostgreSQL: its schema atl_backup_drill "
                                                      "is there")


def test_the_schedule_is_the_files_and_is_off_without_a_backup_section(project: Project, tmp_path: Path):
    (schedule,) = backup_definitions().schedules
    assert schedule.default_status.value == "STOPPED"
    with_backups(project, tmp_path / "restic", extra=", schedule: '15 4 * * 1-5'")
    (schedule,) = backup_definitions().schedules
    assert (schedule.cron_schedule, schedule.default_status.value) == ("15 4 * * 1-5", "RUNNING")


def instance(project: Project) -> DagsterInstance:
    return DagsterInstance.from_config(str(project.dagster_home))
