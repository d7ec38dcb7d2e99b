"""`atl utils doctor`: each missing piece found, with what to do."""

from __future__ import annotations

import json
import socket

import pytest

from atl_pipeline.config import load_config
from atl_pipeline.project import Project
from tests.ports import free_port
from tests.test_cli import run

CANARY = "canary-Dr4kT9mV"


@pytest.mark.slow
def test_a_ready_machine(capsys, project: Project):
    project.ensure_instance()
    code, out, _ = run(capsys, "utils", "doctor", "--json")
    document = json.loads(out)
    assert code == 0 and document["ok"] is True, out
    names = [check["name"] for check in document["checks"]]
    assert names[:13] == ["terraform", "caddy", "supervisord", "prometheus", "promtool",
                          "prometheus-blackbox-exporter", "prometheus-alertmanager", "amtool", "git", "restic",
                          "rsyslogd", "checkov",
                          f"port {project_port(project, 'http_port')}"]
    assert set(document["checks"][0]) == {"name", "ok", "detail", "fix"}


@pytest.mark.slow
def test_tools_missing_from_path_are_named_with_their_fix(capsys, project: Project, monkeypatch, tmp_path):
    project.ensure_instance()
    monkeypatch.setenv("PATH", str(tmp_path))
    code, out, _ = run(capsys, "utils", "doctor")
    assert code == 1
    assert "FAIL  terraform" in out and "install Terraform 1.5 or newer and put it on PATH" in out
    assert "apt-get install -y --no-install-recommends prometheus-blackbox-exporter" in out
    assert "apt-get install -y git" in out
    assert "ok    caddy" in out  # from the virtualenv, not PATH


@pytest.mark.slow
def test_a_port_another_program_holds(capsys, project: Project):
    port = project_port(project, "https_port")
    with socket.create_server(("127.0.0.1", port)):
        code, out, _ = run(capsys, "utils", "doctor")
    assert code == 1
    assert "target.https_port: in use by another program" in out
    assert "set target.https_port in domains.yml to a free port" in out


@pytest.mark.slow
def test_a_fresh_clone_has_no_instance_yet_and_that_is_no_failure(capsys, project: Project):
    code, out, _ = run(capsys, "utils", "doctor", "--json")
    document = json.loads(out)
    assert code == 0 and document["ok"] is True, out
    assert document["checks"][-1] == {"name": "dagster instance", "ok": True, "fix": "",
                                      "detail": "not yet created (created by `make run` or `atl infra up`)"}
    assert not project.dagster_home.exists()


@pytest.mark.slow
def test_the_database_of_a_postgres_instance_answers_its_password_masked(capsys, project: Project, postgres,
                                                                         monkeypatch):
    url = f"postgresql+psycopg2://postgres:{CANARY}@127.0.0.1:{postgres.port}/postgres?sslmode=disable"
    assert run(capsys, "utils", "instance", "--postgres", "env:ATL_TEST_DAGSTER_PG")[0] == 1  # not set yet
    code, checks = doctor(capsys)
    assert (code, checks["dagster database"]["ok"]) == (1, False)
    assert checks["dagster database"]["detail"].startswith("the secret env:ATL_TEST_DAGSTER_PG is not set")

    closed = free_port()  # nothing listens there
    monkeypatch.setenv("ATL_TEST_DAGSTER_PG", url.replace(str(postgres.port), str(closed)))
    code, checks = doctor(capsys)
    assert (code, checks["dagster database"]["ok"]) == (1, False)
    assert checks["dagster database"]["detail"] == (
        f"postgresql+psycopg2://postgres:***@127.0.0.1:{closed}/postgres?sslmode=disable: "
        f'connection to server at "127.0.0.1", port {closed} failed: Connection refused')

    monkeypatch.setenv("ATL_TEST_DAGSTER_PG", url)
    code, checks = doctor(capsys)
    assert code == 0 and checks["dagster instance"]["detail"] == f"{project.dagster_home} (postgres)"
    assert checks["dagster database"] == {"name": "dagster database", "ok": True, "fix": "", "detail":
                                          f"postgresql+psycopg2://postgres:***@127.0.0.1:{postgres.port}/postgres"
                                          "?sslmode=disable answers"}


def doctor(capsys) -> tuple[int, dict[str, dict]]:
    """`atl utils doctor --json`: its exit code and its checks by name; the password never in them."""
    code, out, _ = run(capsys, "utils", "doctor", "--json")
    assert CANARY not in out
    return code, {check["name"]: check for check in json.loads(out)["checks"]}


def project_port(project: Project, setting: str) -> int:
    return load_config(project.domains_file).config.target.ports[setting]


def test_status_with_nothing_deployed_exits_1(capsys, project: Project):
    code, out, _ = run(capsys, "infra", "status", "--json")
    report = json.loads(out)
    assert code == 1 and report["domains"] == [] and report["load_balancer"]["running"] is False
