"""The project's Dagster instance: SQLite by default; with `atl utils instance --postgres env:NAME`
(or ATL_DAGSTER_PG) a PostgreSQL database that webservers and daemons on several machines share,
dagster.yaml naming only the variable that holds its URL."""

from __future__ import annotations

import json

import yaml

from atl_pipeline.project import Project
from tests.test_cli import run
from tests.test_secrets import readable

CANARY = "canary-Pg7wQ2xR"
VARIABLE = "ATL_TEST_DAGSTER_PG"


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
    assert run(capsys, "utils", "instance", "--postgres", "env:KEPT_URL")[0] == 0
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
    assert run(capsys, "utils", "instance", "--postgres", f"env:{VARIABLE}")[0] == 0
    code, _, err = run(capsys, "infra", "up")
    assert code == 2 and f"the secret env:{VARIABLE} is not set" in err
    monkeypatch.setenv(VARIABLE, f"postgresql://dagster:{CANARY}@db.internal/dagster")
    code, _, err = run(capsys, "infra", "up")
    assert code == 2 and "needs postgresql+psycopg2://" in err and CANARY not in err
    assert not (project.state_dir / "terraform").exists()
