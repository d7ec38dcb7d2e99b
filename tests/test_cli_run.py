"""`atl infra plan|apply|destroy|drift` and `up --domain`: output, JSON shapes and exit codes,
against real Terraform and the local runtime."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atl_pipeline.project import Project
from atl_pipeline.runtime.local import deployed_runtime
from tests.test_cli import run

API = 'terraform_data.domain["api.allthingslinux.org"]'
API_SERVICE = 'terraform_data.service["backend-api"]'
ATL = str(Path(sys.executable).with_name("atl"))


@pytest.mark.slow
def test_plan_lists_the_changes_and_changes_nothing(capsys, project: Project):
    code, out, _ = run(capsys, "infra", "plan")

    assert code == 0, out
    assert re.search(rf"^{re.escape(API)} +create$", out, re.M)
    assert re.search(r"^run \S+: SUCCESS$", out, re.M)
    assert not (project.state_dir / "runtime" / "deployed.json").exists()


@pytest.mark.slow
def test_plan_as_json(capsys, project: Project):
    code, out, _ = run(capsys, "infra", "plan", "--json")

    document = json.loads(out)
    assert code == 0 and document["status"] == "SUCCESS" and document["success"] is True
    assert [s["stage"] for s in document["stages"]] == ["domain_config", "validated_config", "terraform_plan"]
    assert set(document["stages"][0]) == {"stage", "status", "seconds", "detail"}
    assert {"address": API_SERVICE, "action": "create"} in document["changes"]
    assert len(document["changes"]) == 5


@pytest.mark.slow
def test_apply_without_a_terminal_needs_yes(capsys, project: Project, monkeypatch):
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # noqa: SIM115 - closed with the test
    code, _, err = run(capsys, "infra", "apply")
    assert code == 2 and "pass -y" in err
    assert not (project.state_dir / "runtime" / "deployed.json").exists()


@pytest.mark.slow
def test_apply_asks_in_a_terminal_and_a_no_applies_nothing(project: Project):
    output = in_terminal([ATL, "infra", "apply"], answer="n", cwd=project.root)
    assert "Apply these changes and deploy? [y/N]" in output
    assert "nothing was applied" in output and output.rstrip().endswith("exit 1")
    assert "\x1b[32mok" in output  # colour on a terminal
    assert not (project.state_dir / "runtime" / "deployed.json").exists()


@pytest.mark.slow
def test_apply_yes_then_up_for_one_domain_then_destroy(capsys, project: Project):
    code, out, _ = run(capsys, "infra", "apply", "-y", "--json")
    applied = json.loads(out)
    assert code == 0 and applied["applied"] is True and applied["plan_run_id"] != applied["run_id"]
    assert [s["stage"] for s in applied["stages"]][-5:] == [
        "terraform_apply", "service_deployment", "health_check", "monitoring", "certificates"]

    text = project.domains_file.read_text()
    project.domains_file.write_text(text.replace("replicas: 3", "replicas: 2").replace('cpu: "100m"', 'cpu: "200m"'))
    code, out, _ = run(capsys, "infra", "up", "--domain", "api.allthingslinux.org", "--json")
    targeted = json.loads(out)
    plan = next(s for s in targeted["stages"] if s["stage"] == "terraform_plan")
    assert code == 0 and plan["detail"] == "2 to update"  # the api domain and its service, not the website's
    code, out, _ = run(capsys, "infra", "plan", "--json")
    assert {c["address"] for c in json.loads(out)["changes"]} == {
        'terraform_data.service["website"]', 'terraform_data.domain["www.allthingslinux.org"]',
        'terraform_data.domain["docs.allthingslinux.org"]'}

    code, out, _ = run(capsys, "infra", "destroy", "-y")
    assert code == 0, out
    assert re.search(rf"^{re.escape(API)} +delete$", out, re.M)
    assert "stopped what ran beside the services (load balancer, monitoring)" in out
    assert not deployed_runtime(project).supervisor.is_running()
    code, out, _ = run(capsys, "infra", "plan", "--json")
    assert {(c["address"], c["action"]) for c in json.loads(out)["changes"]} == {
        (f'terraform_data.{kind}["{name}"]', "create") for kind, name in (
            ("domain", "api.allthingslinux.org"), ("domain", "www.allthingslinux.org"),
            ("domain", "docs.allthingslinux.org"),
            ("service", "backend-api"), ("service", "website"))}


@pytest.mark.slow
def test_up_for_an_unknown_domain_fails_at_the_plan(capsys, project: Project):
    code, out, _ = run(capsys, "infra", "up", "--domain", "nope.allthingslinux.org")
    assert code == 1 and "no enabled domain nope.allthingslinux.org" in out


@pytest.mark.slow
def test_drift_reports_heals_and_exits_accordingly(capsys, project: Project):
    code, out, err = run(capsys, "infra", "drift")
    assert code == 1 and "has anything been deployed?" in err
    assert run(capsys, "infra", "up")[0] == 0
    assert run(capsys, "infra", "drift")[1].startswith("no drift")

    runtime = deployed_runtime(project)
    group = runtime.deployed()["services"]["website"]["group"]
    runtime.supervisor.rpc.stopProcess(f"{group}:{group}_0", True)
    code, out, _ = run(capsys, "infra", "drift", "--json")
    assert code == 1 and json.loads(out)["lines"] == [f"runtime: service website: replica {group}_0 is STOPPED"]
    code, out, _ = run(capsys, "infra", "drift", "--heal")
    assert code == 1 and f"healed: service website: replica {group}_0 is STOPPED" in out
    assert run(capsys, "infra", "drift")[0] == 0

    state = project.state_dir / "terraform" / "production" / "terraform.tfstate"
    edited = json.loads(state.read_text())  # what Terraform manages, changed under its feet
    domain = next(r for r in edited["resources"] if r["name"] == "domain")["instances"][0]["attributes"]
    domain["output"]["value"] = json.dumps({**json.loads(domain["output"]["value"]), "replicas": 9})  # one JSON string
    edited["serial"] += 1
    state.write_text(json.dumps(edited))
    code, out, _ = run(capsys, "infra", "drift", "--json")
    assert code == 1 and json.loads(out)["lines"] == [
        "terraform: a refresh-only plan finds changes made outside Terraform; a deploy run reconciles them"]


def in_terminal(argv: list[str], answer: str, cwd: Path, timeout: float = 120) -> str:
    """Run `argv` on a pseudo-terminal, type `answer` at its prompt; all it printed, then `exit N`."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal of its own
        os.chdir(cwd)
        os.execvpe(argv[0], argv, {**os.environ, "ATL_PROJECT_DIR": str(cwd), "TERM": "xterm"})
    output, answered, deadline = b"", False, time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child exited and the terminal closed
            break
        output += chunk
        if not answered and b"[y/N]" in output:
            os.write(fd, answer.encode() + b"\n")
            answered = True
    _, status = os.waitpid(pid, 0)
    return output.decode(errors="replace") + f"\nexit {os.waitstatus_to_exitcode(status)}"


def test_commands_have_help(capsys):
    for command in ("plan", "apply", "destroy", "drift"):
        code, out, _ = run(capsys, "infra", command, "--help")
        assert code == 0 and "usage: atl infra" in out


@pytest.mark.slow
def test_json_output_is_the_only_output(project: Project):
    result = subprocess.run([ATL, "infra", "plan", "--json"], capture_output=True, text=True, cwd=project.root,
                            env={**os.environ, "ATL_PROJECT_DIR": str(project.root)}, check=False)
    assert result.returncode == 0 and json.loads(result.stdout)["status"] == "SUCCESS"


@pytest.mark.slow
def test_a_plan_that_deletes_waits_for_approval_and_says_how_to_give_it(capsys, project: Project, tmp_path: Path):
    """`plan` made its plan: exit 0, the destroy check held (HOLD, not FAIL). `apply -f FILE` stops
    and names the command that approves that same file, not the project's domains.yml."""
    assert run(capsys, "infra", "apply", "-y")[0] == 0
    edited = tmp_path / "fewer.yml"
    text = project.domains_file.read_text()
    edited.write_text(text[:text.index('  - name: "docs')])  # docs.allthingslinux.org removed

    code, out, _ = run(capsys, "infra", "plan", "-f", str(edited))
    assert code == 0, out
    assert re.search(r"^HOLD +terraform_plan:destroy_approved +the plan deletes or replaces 1 resources", out, re.M)
    assert not re.search(r"^FAIL", out, re.M) and "FAILURE (held: the plan waits for approval)" in out
    assert f"to go ahead: atl infra apply -f {edited} --approve-destroy" in out

    code, out, _ = run(capsys, "infra", "apply", "-f", str(edited), "-y")
    assert code == 1 and f"to go ahead: atl infra apply -f {edited} --approve-destroy" in out
    assert run(capsys, "infra", "apply", "-f", str(edited), "-y", "--approve-destroy")[0] == 0
