"""Plan and apply with real Terraform on the local backend: idempotence, exact changes,
the destroy gate, stale plans and the state lock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize

from atl_pipeline.config import load_config
from atl_pipeline.defs.config_stages import domain_config, validated_config
from atl_pipeline.defs.terraform_stages import terraform_apply, terraform_plan
from atl_pipeline.orchestration.runner import run_deploy, stages_until
from atl_pipeline.orchestration.stage import APPROVE_DESTROY_TAG
from atl_pipeline.project import Project
from atl_pipeline.terraform.cli import StalePlan, StateLocked, Terraform, TerraformError
from atl_pipeline.terraform.plan import Change
from atl_pipeline.terraform.stages import DestroyNotApproved, InvalidConfig, apply_plan, make_plan, terraform
from atl_pipeline.validation import validate
from tests.dagster_helpers import stage_resources
from tests.ports import reserve_block, service_ports
from tests.runtime_helpers import clash_ports
from tests.terraform_helpers import held_lock

API_PORT, WEB_PORT = service_ports()  # the example's services' first ports in this test process

API = 'terraform_data.domain["api.allthingslinux.org"]'
WWW = 'terraform_data.domain["www.allthingslinux.org"]'
DOCS = 'terraform_data.domain["docs.allthingslinux.org"]'
WEBSITE = 'terraform_data.service["website"]'


def validated(project: Project):
    return validate(load_config(project.domains_file))


def edit(project: Project, old: str, new: str) -> None:
    text = project.domains_file.read_text()
    assert old in text
    project.domains_file.write_text(text.replace(old, new))


def remove_www_and_docs(project: Project) -> None:
    text = project.domains_file.read_text()
    project.domains_file.write_text(text[:text.index('  - name: "www')])


@pytest.mark.slow
def test_plan_apply_then_nothing_left_to_do(project: Project):
    first = make_plan(project, validated(project), "first")
    assert first.summary.counts == {"create": 5, "update": 0, "replace": 0, "delete": 0}
    assert first.plan_file.is_file()

    applied = apply_plan(project, first)
    assert applied.applied
    api = applied.outputs.services["backend-api"]
    assert api.ports == [API_PORT + r for r in range(3)]
    assert api.standby_ports == [API_PORT + 50 + r for r in range(3)]
    assert applied.outputs.services["website"].ports == [WEB_PORT, WEB_PORT + 1]
    assert applied.outputs.domains["www.allthingslinux.org"].url == "https://www.allthingslinux.org/"

    again = make_plan(project, validated(project), "again")
    assert again.summary.changes == () and again.unchanged  # the files and the state of the last apply
    assert not (first.plan_file.parent / "again.tfplan").exists()  # Terraform was not asked
    noop = apply_plan(project, again)
    assert (noop.applied, noop.serial, noop.outputs) == (False, applied.serial, applied.outputs)
    assert not terraform(project, again.state, "production").drifted()


@pytest.mark.slow
def test_a_state_moved_since_the_last_apply_is_planned_again(project: Project):
    apply_plan(project, make_plan(project, validated(project), "first"))
    state = project.state_dir / "terraform" / "production" / "terraform.tfstate"
    edited = json.loads(state.read_text())  # another writer of the state (a person, another tool)
    edited["serial"] += 1
    state.write_text(json.dumps(edited))

    again = make_plan(project, validated(project), "again")
    assert not again.unchanged and again.plan_file.is_file()
    assert apply_plan(project, again).serial == edited["serial"]
    assert make_plan(project, validated(project), "third").unchanged


@pytest.mark.slow
def test_changing_one_domain_updates_exactly_its_resource(project: Project):
    apply_plan(project, make_plan(project, validated(project), "first"))
    text = project.domains_file.read_text()
    docs = text.index('  - name: "docs')
    project.domains_file.write_text(text[:docs] + text[docs:].replace("monitoring: true", "monitoring: false"))

    plan = make_plan(project, validated(project), "second")

    assert plan.summary.changes == (Change(DOCS, "update"),)
    assert apply_plan(project, plan).outputs.domains["docs.allthingslinux.org"].monitoring is False


@pytest.mark.slow
def test_scaling_a_service_updates_it_and_its_domain_in_place(project: Project):
    apply_plan(project, make_plan(project, validated(project), "first"))
    edit(project, "replicas: 2", "replicas: 3")
    plan = make_plan(project, validated(project), "second")
    assert plan.summary.changes == (Change(DOCS, "update"), Change(WWW, "update"), Change(WEBSITE, "update"))
    assert apply_plan(project, plan).outputs.services["website"].ports == [WEB_PORT + r for r in range(3)]


@pytest.mark.slow
def test_a_new_port_or_tls_setting_replaces(project: Project):
    apply_plan(project, make_plan(project, validated(project), "first"))
    edit(project, f"port: {WEB_PORT}", f"port: {reserve_block()}")
    text = project.domains_file.read_text()
    api_end = text.index('  - name: "www')
    project.domains_file.write_text(text[:api_end].replace("ssl: true", "ssl: false") + text[api_end:])

    plan = make_plan(project, validated(project), "second")

    assert plan.summary.changes == (Change(API, "replace"), Change(WEBSITE, "replace"))
    assert plan.summary.destructive == plan.summary.changes


@pytest.mark.slow
def test_removing_a_domain_stops_at_the_destroy_gate_until_approved(project: Project):
    assert run_deploy(project, stages=stages_until("terraform_apply")).success
    runner = terraform(project, load_config(project.domains_file).config.state, "production")
    serial = runner.state_serial()
    remove_www_and_docs(project)

    stages = []
    blocked = run_deploy(project, on_stage=stages.append, stages=stages_until("terraform_apply"))
    assert not blocked.success
    check = next(s for s in stages if s.stage == "terraform_plan:destroy_approved")
    assert check.status == "needs approval" and blocked.needs_approval
    assert f"{DOCS} (delete), {WWW} (delete), {WEBSITE} (delete)" in check.detail
    assert "--approve-destroy" in check.detail and APPROVE_DESTROY_TAG in check.detail
    assert ("terraform_apply", "skipped") in [(s.stage, s.status) for s in stages]
    assert runner.state_serial() == serial

    rematerialized = materialize(  # the operator re-materializes terraform_apply alone: still gated
        [domain_config, validated_config, terraform_plan, terraform_apply], selection=[terraform_apply],
        instance=DagsterInstance.from_config(str(project.dagster_home)), raise_on_error=False,
        resources=stage_resources(project))
    assert not rematerialized.success
    with pytest.raises(DestroyNotApproved, match="approve-destroy"):
        apply_plan(project, make_plan(project, validated(project), "unapproved"))
    assert runner.state_serial() == serial

    approved = run_deploy(project, tags={APPROVE_DESTROY_TAG: "true"}, stages=stages_until("terraform_apply"))
    assert approved.success
    assert set(runner.outputs()["domains"]) == {"api.allthingslinux.org"}


@pytest.mark.slow
def test_a_plan_made_before_the_state_moved_is_not_applied(project: Project):
    config = validated(project)
    older = make_plan(project, config, "older")
    newer = make_plan(project, config, "newer")
    apply_plan(project, newer)
    with pytest.raises(StalePlan, match="plan again"):
        apply_plan(project, older)


def test_an_invalid_configuration_is_never_planned(project: Project):
    clash_ports(project)
    with pytest.raises(InvalidConfig, match="findings"):
        make_plan(project, validated(project), "bad")
    assert not (project.state_dir / "terraform").exists()


@pytest.mark.slow
def test_a_held_state_lock_is_reported_with_how_to_release_it(project: Project):
    plan = make_plan(project, validated(project), "first")
    with held_lock(plan.workdir):
        runner = terraform(project, plan.state, "production")
        runner.lock_timeout = "1s"
        with pytest.raises(StateLocked) as raised:
            runner.apply(plan.plan_file)
    assert "terraform force-unlock" in str(raised.value) and str(plan.workdir) in str(raised.value)


@pytest.mark.slow
def test_a_command_past_its_time_limit_is_interrupted_and_releases_its_lock(project: Project):
    plan = make_plan(project, validated(project), "first")
    runner = terraform(project, plan.state, "production")
    runner.timeout = 2.0
    with held_lock(plan.workdir), pytest.raises(TerraformError, match="took longer than 2 s and was interrupted"):
        runner.apply(plan.plan_file)  # waits for the lock until interrupted
    runner.timeout = 600.0
    assert apply_plan(project, plan).applied  # nothing was left locked


def test_a_missing_terraform_binary_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TerraformError, match="terraform is not on PATH"):
        Terraform(tmp_path, tmp_path / "home").init()
