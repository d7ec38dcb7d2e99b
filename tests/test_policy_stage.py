"""The policy check on every plan, as the deploy job runs it (real Terraform and Checkov), and
`atl quality policy`, which runs the same checks without Terraform."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance

from atl_pipeline import files
from atl_pipeline.config import load_config
from atl_pipeline.orchestration.runner import run_deploy, stages_until
from atl_pipeline.policy.checkov import ARGUMENTS, Scan, ask
from atl_pipeline.project import Project
from atl_pipeline.terraform.render import render
from tests.conftest import REPO
from tests.test_cli import run

pytestmark = pytest.mark.slow
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example key: Checkov's secrets scan knows its shape
EXCEPTIONS = """\
policy:
  exceptions:
    - {policy: production_ssl, domain: api.allthingslinux.org, reason: TLS ends at the edge proxy}
    - {policy: production_monitoring, reason: probed by the status page}
    - {policy: production_replicas, reason: a single replica while it is migrated}
    - {policy: CKV_SECRET_2, reason: the example key AWS documents}
    - {policy: plaintext_secret, reason: a throwaway database}
"""


def break_the_defaults(project: Project) -> None:
    text = project.domains_file.read_text()
    for old, new in (("    ssl: true", "    ssl: false"), ("    monitoring: true", "    monitoring: false"),
                     ("    replicas: 3", "    replicas: 1"), ('--port, "{port}"]', f'--port, "{{port}}", {AWS_KEY}]'),
                     ('--port, "{port}"]', '--port, "{port}", --db-password, hunter2]')):
        assert old in text
        text = text.replace(old, new, 1)
    project.domains_file.write_text(text)


def policy_check(project: Project, run_id: str):
    instance = DagsterInstance.from_config(str(project.dagster_home))
    (record,) = [r for r in instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
                 .records if r.event_log_entry.dagster_event.event_specific_data.check_name == "policy"]
    return record.event_log_entry.dagster_event.event_specific_data


def test_a_plan_that_breaks_the_defaults_is_stopped_before_apply_and_says_where(project: Project):
    break_the_defaults(project)
    outcome = run_deploy(project, stages=stages_until("terraform_apply"))
    assert not outcome.success and "terraform_apply" not in outcome.metadata
    assert not (project.state_dir / "terraform" / "production" / "last-apply.json").exists()
    check = policy_check(project, outcome.run_id)
    violations = check.metadata["violations"].value
    assert not check.passed
    for policy, line in (("production_ssl", 30), ("production_monitoring", 31), ("production_replicas", 32)):
        assert f"domains.yml:{line}:" in violations and policy in violations, (policy, violations)
    assert "domains.yml:22:" in violations and "plaintext_secret" in violations  # the second service's command
    assert "CKV_SECRET_2" in violations and "| main.tf:" in violations  # Checkov, in the rendered file


def test_the_operators_exceptions_let_it_through_and_are_recorded_with_their_reasons(project: Project):
    break_the_defaults(project)
    project.domains_file.write_text(project.domains_file.read_text() + EXCEPTIONS)
    outcome = run_deploy(project, stages=stages_until("terraform_apply"))
    assert outcome.success
    check = policy_check(project, outcome.run_id)
    assert check.passed and check.metadata["violations"].value == "None."
    excepted = check.metadata["excepted"].value
    for reason in ("TLS ends at the edge proxy", "probed by the status page", "a single replica while it is migrated",
                   "the example key AWS documents", "a throwaway database"):
        assert reason in excepted


def test_checkov_reads_both_targets_golden_files_and_finds_nothing(tmp_path: Path):
    local = render(load_config(REPO / "domains.yml").config, REPO / "terraform_templates").files
    for name, rendered in (("hcloud", read_folder(REPO / "tests/golden/hcloud")),
                           ("imported", read_folder(REPO / "tests/golden/imported/terraform")), ("local", local)):
        result = Scan(rendered, tmp_path / name).result()
        assert result.findings == (), (name, result)


def test_a_file_checkov_cannot_read_is_a_finding_not_a_pass(tmp_path: Path):
    files = read_folder(REPO / "tests/golden/hcloud")
    # the form Checkov's HCL parser could not read, which the template had before this check
    old, new = 'join("", ["#cloud-config\\n", yamlencode({', '"#cloud-config\\n${yamlencode({'
    files["main.tf"] = files["main.tf"].replace(old, new).replace("  })])\n", '  })}"\n', 1)
    for again in ("first", "again"):  # Checkov's server remembers nothing of the scan before
        (finding,) = Scan(files, tmp_path / again).result().findings
        assert (finding.check, finding.file) == ("checkov", "main.tf")


def test_atl_quality_policy_runs_the_same_checks_without_terraform(project: Project, capsys):
    break_the_defaults(project)
    code, out, _ = run(capsys, "quality", "policy", "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert {f["policy"] for f in report["violations"]} == {
        "production_ssl", "production_monitoring", "production_replicas", "CKV_SECRET_2", "plaintext_secret"}
    assert not list((project.state_dir / "terraform").glob("*/*.tfstate"))
    project.domains_file.write_text(project.domains_file.read_text() + EXCEPTIONS)
    assert run(capsys, "quality", "policy")[0] == 0


def read_folder(folder: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in folder.glob("*.tf")}


def test_checkovs_server_outlives_a_bad_request(tmp_path: Path):
    ask(["--directory", str(tmp_path), *ARGUMENTS])  # started, if none serves
    with socket.socket(socket.AF_UNIX) as connection:
        connection.connect(str(files.private_folder() / "checkov.sock"))
        connection.sendall(b"not a request\n")
        assert json.loads(connection.makefile("rb").read())["exit"] == -1
    assert ask(["--directory", str(tmp_path), *ARGUMENTS])["exit"] == 0
