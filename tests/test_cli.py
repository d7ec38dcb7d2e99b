"""`atl infra validate|config|up`: output and exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance

from atl_pipeline.cli import main
from atl_pipeline.project import Project
from tests.conftest import SEED
from tests.runtime_helpers import clash_ports

FINDING = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<column>\d+): (?P<message>.+)$")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_a_valid_file(capsys, write):
    path = write(SEED)
    assert run(capsys, "infra", "validate", str(path)) == (0, f"{path}: valid (1 domains, 1 services)\n", "")


def test_validate_defaults_to_the_projects_file(capsys, project: Project):
    code, out, _ = run(capsys, "infra", "validate")
    assert (code, out) == (0, "domains.yml: valid (3 domains, 2 services)\n")


def test_validate_prints_every_finding_located(capsys, write):
    path = write("""\
        services: {api: {command: [api], port: 9000, helth: {}}}
        domains:
          - {name: a.example.org, service: api, replicas: 0}
    """)
    code, out, _ = run(capsys, "infra", "validate", str(path))
    lines = out.splitlines()
    assert code == 1
    assert [FINDING.match(line).group("file", "line", "column") for line in lines] == [
        (str(path), "1", "46"), (str(path), "3", "51")]
    assert "did you mean 'health'?" in lines[0]


def test_validate_reports_semantic_findings(capsys, write):
    path = write(SEED.replace('service: "backend-api"', 'service: "backend"'))
    code, out, _ = run(capsys, "infra", "validate", str(path))
    assert code == 1
    assert out == f"{path}:8:14: service 'backend' is not defined; did you mean 'backend-api'?\n"


def test_usage_errors_exit_2(capsys, tmp_path: Path):
    code, out, err = run(capsys, "infra", "validate", str(tmp_path / "missing.yml"))
    assert (code, out) == (2, "")
    assert err == f"atl: cannot read {tmp_path / 'missing.yml'}: No such file or directory\n"
    assert run(capsys, "infra", "frobnicate")[0] == 2
    assert run(capsys)[0] == 2
    assert run(capsys, "infra", "up", "-f", str(tmp_path / "missing.yml"))[0] == 2


def test_config_prints_the_domains_table(capsys, project: Project):
    code, out, _ = run(capsys, "infra", "config")
    assert code == 0
    assert out.splitlines() == [
        "domain                   service      replicas  cpu   memory  ssl  monitoring",
        "api.allthingslinux.org   backend-api  3         500m  512Mi   yes  yes",
        "www.allthingslinux.org   website      2         100m  128Mi   yes  yes",
        "docs.allthingslinux.org  website      2         100m  128Mi   yes  yes",
    ]


@pytest.mark.slow
def test_up_runs_every_stage_in_the_projects_instance(capsys, project: Project):
    code, out, _ = run(capsys, "infra", "up")
    lines = out.splitlines()
    assert code == 0, out
    assert re.match(r"ok +domain_config +\d+\.\d\ds  3 domains, 2 services$", lines[0])
    assert re.match(r"ok +validated_config +\d+\.\d\ds  no findings$", lines[1])
    assert re.match(r"ok +terraform_plan +\d+\.\d\ds  5 to create$", lines[2])
    assert re.match(r"ok +terraform_apply +\d+\.\d\ds  applied 5 to create; state serial \d+$", lines[3])
    assert re.match(r"ok +service_deployment +\d+\.\d\ds  2 started$", lines[4])
    assert re.match(r"ok +health_check +\d+\.\d\ds  3/3 domains healthy; ", lines[5])
    assert re.match(r"ok +monitoring +\d+\.\d\ds  9/9 targets up, 5 rules loaded$", lines[6])
    assert re.match(r"ok +certificates +\d+\.\d\ds  3/3 certificates valid$", lines[7])
    run_id = re.fullmatch(r"run (\S+): SUCCESS", lines[8]).group(1)
    instance = DagsterInstance.from_config(str(project.dagster_home))
    assert instance.get_run_by_id(run_id).job_name == "deploy"


def test_up_fails_when_validation_fails(capsys, project: Project, write):
    path = write(SEED.replace("port: 8080", "port: 8080\n    image: 'not an image'"), name="other.yml")
    code, out, _ = run(capsys, "infra", "up", "-f", str(path))
    assert code == 1
    assert out.splitlines()[0].startswith("FAIL  domain_config")
    assert f"{path}:5:12: services.backend-api.image: 'not an image' is not a container image" in out
    assert re.findall(r"^skip +(\w+) +not run: an earlier stage failed$", out, re.M) == [
        "validated_config", "terraform_plan", "terraform_apply", "service_deployment", "health_check", "monitoring",
        "certificates"]
    assert re.search(r"^run \S+: FAILURE$", out, re.M)


def test_up_stops_at_the_blocking_check(capsys, project: Project):
    clashing = clash_ports(project)
    code, out, _ = run(capsys, "infra", "up")
    assert code == 1
    assert re.search(r"^FAIL +validated_config:valid +\S*domains.yml:\d+:\d+: services 'backend-api' and "
                     fr"'website' both use port {clashing}", out, re.M)
    assert re.findall(r"^skip +(\w+) +not run", out, re.M) == [
        "terraform_plan", "terraform_apply", "service_deployment", "health_check", "monitoring", "certificates"]
    assert not (project.state_dir / "terraform").exists()


def test_the_atl_console_script_is_installed(write):
    atl = Path(sys.executable).with_name("atl")
    result = subprocess.run([atl, "infra", "validate", write(SEED)], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout.endswith("valid (1 domains, 1 services)\n")) == (0, True)


@pytest.mark.parametrize("group", ["infra", "utils"])
def test_help_lists_the_commands(capsys, group):
    code, out, _ = run(capsys, group, "--help")
    assert code == 0 and "COMMAND" in out


def test_validate_as_json(capsys, write):
    code, out, _ = run(capsys, "infra", "validate", "--json", str(write(SEED)))
    assert code == 0 and json.loads(out) == {"valid": True, "domains": 1, "services": 1, "findings": []}

    path = write(SEED.replace("replicas: 3", "replicas: 0"))
    code, out, _ = run(capsys, "infra", "validate", "--json", str(path))
    document = json.loads(out)
    assert code == 1 and document["valid"] is False and document["domains"] is None
    (finding,) = document["findings"]
    assert set(finding) == {"file", "line", "column", "message"} and finding["line"] == 11


@pytest.mark.parametrize("command", [["infra", "validate"], ["infra", "config"], ["quality", "lint"],
                                     ["infra", "up", "-f"], ["utils", "disable", "a.org", "-f"]])
def test_a_fifo_is_refused_at_once(capsys, tmp_path, hang_guard, command):
    """Opening a FIFO for reading would wait for a writer forever."""
    fifo = tmp_path / "domains.yml"
    os.mkfifo(fifo)
    code, out, err = run(capsys, *command, str(fifo))
    assert (code, out) == (2, "")
    assert err == f"atl: cannot read {fifo}: it is a FIFO, not a regular file; give the path of a domains.yml\n"


def test_an_internal_error_is_one_line_naming_its_saved_traceback(capsys, project, monkeypatch):
    def broken(loaded):
        raise ZeroDivisionError("a planted bug")

    monkeypatch.setattr("atl_pipeline.cli.infra.validate", broken)
    code, out, err = run(capsys, "infra", "validate")
    assert (code, out) == (3, "")
    saved = Path(re.fullmatch(r"atl: internal error \(ZeroDivisionError: a planted bug\); the traceback is in "
                              r"(\S+); please report it\n", err).group(1))
    assert saved.parent == project.state_dir / "crashes"
    assert "Traceback" in saved.read_text() and "a planted bug" in saved.read_text()


def test_findings_are_cut_at_a_hundred_and_counted(capsys, write):
    domains = "".join(f"  - {{name: d{i}.org, service: web, replicas: 0}}\n" for i in range(5000))
    path = write(f"services: {{web: {{command: [app], port: 9000}}}}\ndomains:\n{domains}")
    code, out, _ = run(capsys, "infra", "validate", str(path))
    lines = out.splitlines()
    assert code == 1 and len(lines) == 101
    assert lines[-1] == f"{path}:103:46: and 4,900 more findings; correct these first"
