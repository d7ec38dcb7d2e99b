"""`atl utils doctor`: each missing piece found, with what to do."""

from __future__ import annotations

import json
import socket

from atl_pipeline.config import load_config
from atl_pipeline.project import Project
from tests.test_cli import run


def test_a_ready_machine(capsys, project: Project):
    project.ensure_instance()
    code, out, _ = run(capsys, "utils", "doctor", "--json")
    document = json.loads(out)
    assert code == 0 and document["ok"] is True, out
    names = [check["name"] for check in document["checks"]]
    assert names[:8] == ["terraform", "caddy", "supervisord", "prometheus", "promtool",
                         "prometheus-blackbox-exporter", "git", f"port {project_port(project, 'http_port')}"]
    assert set(document["checks"][0]) == {"name", "ok", "detail", "fix"}


def test_tools_missing_from_path_are_named_with_their_fix(capsys, project: Project, monkeypatch, tmp_path):
    project.ensure_instance()
    monkeypatch.setenv("PATH", str(tmp_path))
    code, out, _ = run(capsys, "utils", "doctor")
    assert code == 1
    assert "FAIL  terraform" in out and "install Terraform 1.5 or newer and put it on PATH" in out
    assert "apt-get install -y --no-install-recommends prometheus-blackbox-exporter" in out
    assert "apt-get install -y git" in out
    assert "ok    caddy" in out  # from the virtualenv, not PATH


def test_a_port_another_program_holds_and_a_missing_instance(capsys, project: Project):
    port = project_port(project, "https_port")
    with socket.create_server(("127.0.0.1", port)):
        code, out, _ = run(capsys, "utils", "doctor")
    assert code == 1
    assert "target.https_port: in use by another program" in out
    assert "set target.https_port in domains.yml to a free port" in out
    assert "run `atl utils instance`" in out


def project_port(project: Project, setting: str) -> int:
    return load_config(project.domains_file).config.target.ports[setting]


def test_status_with_nothing_deployed_exits_1(capsys, project: Project):
    code, out, _ = run(capsys, "infra", "status", "--json")
    report = json.loads(out)
    assert code == 1 and report["domains"] == [] and report["load_balancer"]["running"] is False
