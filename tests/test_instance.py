"""The project's Dagster instance: SQLite by default; with `atl utils instance --postgres env:NAME`
(or ATL_DAGSTER_PG) a PostgreSQL database that webservers and daemons on several machines share,
dagster.yaml naming only the variable that holds its URL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, RunsFilter

from atl_pipeline.cli import main
from atl_pipeline.project import Project
from tests.conftest import copy_project
from tests.dagster_dev import LAUNCH, REPO, DagsterDev
from tests.ports import free_port
from tests.test_cli import run
from tests.test_secrets import readable

CANARY = "canary-Pg7wQ2xR"
VARIABLE = "ATL_TEST_DAGSTER_PG"
BIN = Path(sys.executable).parent
SENSOR = "domains_file_changed"


def settings(project: Project) -> str:
    return (project.dagster_home / "dagster.yaml").read_text()


def test_sqlite_by_default_postgres_once_set_and_back(capsys, project: Project, monkeypatch):
    code, out, _ = run(capsys, "utils", "instance")
    assert (code, out) == (0, f"directory  {project.dagster_home}\nstorage    sqlite, in the directory\n")
    assert "granularity: run" in settings(project) and "storage:" not in settings(project)
    (project.dagster_home / "dagster.yaml").write_text("telemetry: {enabled: true}\n")  # an edit is overwritten
    assert run(capsys, "utils", "instance")[0] == 0 and "granularity: run" in settings(project)

    monkeypatch.setenv(VARIABLE, f"postgresql+psycopg2://dagster:{CANARY}@db.internal:5432/dagster")
    code, out, _ = run(capsys, "utils", "instance", "--postgres", f"env:{VARIABLE}", "--json")
    shown = json.loads(out)
    assert code == 0 and CANARY not in out
    assert (shown["storage"], shown["postgres"], shown["url"]) == (
        "postgres", f"env:{VARIABLE}", "postgresql+psycopg2://dagster:***@db.internal:5432/dagster")
    written = yaml.safe_load(settings(project))
    assert written["storage"] == {"postgres": {"postgres_url": {"env": VARIABLE}}}
    assert written["concurrency"]["pools"]["granularity"] == "run"
    assert not any(CANARY.encode() in readable(path) for path in project.state_dir.rglob("*") if path.is_file())
    assert "storage    postgres" in run(capsys, "utils", "instance")[1]  # the setting is kept

    code, out, _ = run(capsys, "utils", "instance", "--sqlite")
    assert (code, out.splitlines()[1]) == (0, "storage    sqlite, in the directory")
    assert "storage:" not in settings(project)


def test_atl_dagster_pg_overrides_the_kept_setting(capsys, project: Project, monkeypatch):
    code, out, _ = run(capsys, "utils", "instance", "--postgres", "env:KEPT_URL")
    assert code == 1 and out.endswith("): the secret env:KEPT_URL is not set: export KEPT_URL in the environment "
                                      "of the pipeline (the shell that runs `atl`, or `make run`/`dg dev`)\n")
    monkeypatch.setenv("ATL_DAGSTER_PG", f"env:{VARIABLE}")
    monkeypatch.setenv(VARIABLE, "postgresql+psycopg2://dagster@db.internal/dagster")
    code, out, _ = run(capsys, "utils", "instance", "--json")
    assert (code, json.loads(out)["postgres"], json.loads(out)["source"]) == (0, f"env:{VARIABLE}", "ATL_DAGSTER_PG")
    assert yaml.safe_load(settings(project))["storage"]["postgres"]["postgres_url"] == {"env": VARIABLE}


def test_a_url_in_place_of_its_variable_is_refused_unseen(capsys, project: Project, monkeypatch):
    url = f"postgresql+psycopg2://dagster:{CANARY}@db.internal/dagster"
    code, out, err = run(capsys, "utils", "instance", "--postgres", url)
    assert code == 2 and "name the database as env:NAME" in err and CANARY not in out + err
    monkeypatch.setenv("ATL_DAGSTER_PG", url)
    code, out, err = run(capsys, "utils", "instance")
    assert code == 2 and "ATL_DAGSTER_PG: name the database as env:NAME" in err and CANARY not in out + err


def test_a_run_refuses_to_start_on_an_unusable_url(capsys, project: Project, monkeypatch):
    """Said in atl's words, before Dagster's own errors (psycopg 3 missing, no such SQLAlchemy plugin)."""
    assert run(capsys, "utils", "instance", "--postgres", f"env:{VARIABLE}")[0] == 1  # written, not usable here
    code, _, err = run(capsys, "infra", "up")
    assert code == 2 and f"the secret env:{VARIABLE} is not set" in err
    monkeypatch.setenv(VARIABLE, f"postgresql://dagster:{CANARY}@db.internal/dagster")
    code, _, err = run(capsys, "infra", "up")
    assert code == 2 and "needs postgresql+psycopg2://" in err and CANARY not in err
    assert not (project.state_dir / "terraform").exists()


# --- on a real PostgreSQL: two machines, one history ---------------------------------------------


@pytest.fixture
def database(postgres, monkeypatch: pytest.MonkeyPatch) -> str:
    """A database of its own in the tests' server, its URL (with a canary password, which trust
    authentication ignores) in VARIABLE."""
    name = f"dagster_{uuid.uuid4().hex[:12]}"
    postgres.query(f"CREATE DATABASE {name}")
    monkeypatch.setenv(VARIABLE, f"postgresql+psycopg2://postgres:{CANARY}@127.0.0.1:{postgres.port}/{name}"
                                 "?sslmode=disable")
    return name


def machine(root: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project of its own (as on another machine), its instance set up with `atl utils instance --postgres`."""
    project = copy_project(root)
    monkeypatch.setenv("ATL_PROJECT_DIR", str(project.root))
    assert main(["utils", "instance", "--postgres", f"env:{VARIABLE}"]) == 0
    return project


def start(argv: list[str], project: Project, log: Path) -> subprocess.Popen:
    """A Dagster process in its own process group, on the project's instance, as a service would run it."""
    environment = {**os.environ, "ATL_PROJECT_DIR": str(project.root), "DAGSTER_HOME": str(project.dagster_home)}
    with log.open("w") as output:
        return subprocess.Popen(argv, cwd=REPO, env=environment, stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True)


@contextlib.contextmanager
def webserver(project: Project, log: Path) -> Iterator[DagsterDev]:
    port = free_port()
    process = start([str(BIN / "dagster-webserver"), "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1",
                     "-p", str(port)], project, log)
    server = DagsterDev(process, f"http://127.0.0.1:{port}", log)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_a_run_launched_on_one_webserver_shows_on_another(tmp_path: Path, database, monkeypatch, capfd):
    """Two webservers, each with its own DAGSTER_HOME (as on two machines), on one database; the URL's
    password is in no log and no file."""
    first, second = machine(tmp_path / "a", monkeypatch), machine(tmp_path / "b", monkeypatch)
    with webserver(first, tmp_path / "a.log") as one, webserver(second, tmp_path / "b.log") as other:
        one.wait_ready()
        other.wait_ready()
        launched = one.graphql(LAUNCH, job="deploy", tags=[{"key": "atl/test", "value": database}])["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched

        (seen,) = other.runs({"atl/test": database})

    assert seen["runId"] == launched["run"]["runId"] and seen["status"] == "QUEUED"  # no daemon runs it here
    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text() + "".join(capfd.readouterr())
    assert CANARY not in logs and f"env: {VARIABLE}" in settings(second)


def sensor_state(instance: DagsterInstance):
    """The file sensor's stored state (its cursor), once it has ticked."""
    return next((state for state in instance.all_instigator_state() if state.instigator_name == SENSOR), None)


def wait_for(what: str, found, log: Path, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not (value := found()):
        assert time.monotonic() < deadline, f"{what}: not after {timeout:.0f} s; see {log}"
        time.sleep(1)
    return value


@contextlib.contextmanager
def daemon(project: Project, log: Path) -> Iterator[None]:
    process = start([str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")], project, log)
    try:
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.mark.slow
def test_a_daemon_restarted_on_another_machine_keeps_the_sensor_cursor(tmp_path: Path, database, postgres,
                                                                       monkeypatch):
    """The file sensor deploys a domains.yml once; its cursor and the run outlive the first daemon's
    machine: the daemon started on another finds the file unchanged and starts nothing."""
    first, second = machine(tmp_path / "a", monkeypatch), machine(tmp_path / "b", monkeypatch)
    for project in (first, second):
        project.domains_file.write_text("domains: [\n")  # the same content; its run ends at domain_config
    runs = RunsFilter(tags={"dagster/sensor_name": SENSOR})
    here, there = (DagsterInstance.from_config(str(project.dagster_home)) for project in (first, second))

    with daemon(first, tmp_path / "a.log"):
        (run_id,) = wait_for("a finished run of the sensor", lambda: [
            r.run_id for r in here.get_runs(runs) if r.is_finished], tmp_path / "a.log")
    cursor = sensor_state(here).instigator_data.cursor
    assert json.loads(cursor)["change"] == 1
    stopped = time.time()

    with daemon(second, tmp_path / "b.log"):
        state = wait_for("the sensor's state", lambda: sensor_state(there), tmp_path / "b.log")
        tick = wait_for("a tick after the restart", lambda: next((
            t for t in there.get_ticks(state.instigator_origin_id, state.selector_id)
            if t.timestamp > stopped and t.status.value != "STARTED"), None), tmp_path / "b.log")

    assert (tick.status.value, tick.skip_reason) == (
        "SKIPPED", f"domains.yml unchanged since it was last deployed (sha256 {json.loads(cursor)['sha256'][:12]})")
    assert sensor_state(there).instigator_data.cursor == cursor
    assert [r.run_id for r in there.get_runs(runs)] == [run_id]
    dump = subprocess.run(["pg_dump", postgres.url.replace("/postgres?", f"/{database}?")], check=True,
                          capture_output=True, timeout=60).stdout
    assert run_id.encode() in dump and CANARY.encode() not in dump
