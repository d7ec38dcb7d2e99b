"""Faults injected into the real processes: the stack converges, and says what happened."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from atl_pipeline.cli import main
from atl_pipeline.config import load_config
from atl_pipeline.orchestration.runner import run_deploy, stages_until
from atl_pipeline.project import Project
from atl_pipeline.runtime.local import deployed_runtime
from atl_pipeline.runtime.supervisor import alive
from atl_pipeline.terraform.cli import TerraformError
from atl_pipeline.terraform.stages import make_plan, terraform
from atl_pipeline.validation import validate
from tests.runtime_helpers import (
    Load,
    drift_from_record,
    kill_when_the_roll_starts,
    program_pid,
    replica_pids,
    wait_until_served,
)
from tests.terraform_helpers import BackgroundApply, kill_terraform_in

pytestmark = pytest.mark.slow  # faults injected into the deployed stack's processes

API = "api.allthingslinux.org"


def test_caddy_killed_is_restarted_with_its_configuration(project: Project):
    assert run_deploy(project, stages=stages_until("service_deployment")).success
    wait_until_served(project, API)
    runtime = deployed_runtime(project)
    caddy = program_pid(project, "caddy")

    os.kill(caddy, signal.SIGKILL)

    wait_until_served(project, API)  # supervisord restarts it; it resumes its last configuration
    restarted = program_pid(project, "caddy")
    assert restarted != caddy and drift_from_record(runtime) == []


def test_caddy_killed_mid_run_then_the_run_routes_through_the_restarted_one(project: Project):
    """Killed as the deployment stage starts, ahead of the Caddy load a new domain needs."""
    assert run_deploy(project, stages=stages_until("service_deployment")).success
    runtime = deployed_runtime(project)
    caddy = program_pid(project, "caddy")
    project.domains_file.write_text(project.domains_file.read_text() + BLOG)

    def kill_caddy(stage: str) -> None:
        if stage == "service_deployment":
            os.kill(caddy, signal.SIGKILL)

    assert run_deploy(project, on_start=kill_caddy, stages=stages_until("health_check")).success
    assert caddy not in {p["pid"] for p in runtime.supervisor.processes()}
    assert wait_until_served(project, "blog.allthingslinux.org").ok
    assert drift_from_record(runtime) == []


def test_supervisord_killed_then_down_stops_what_it_left_running(project: Project, capsys):
    """Its children outlive it; `atl infra down` finds them by the socket supervisord marked them
    with, so the next `up` finds its ports free."""
    assert run_deploy(project, stages=stages_until("service_deployment")).success
    supervisor = deployed_runtime(project).supervisor
    children = {p["pid"] for p in supervisor.processes()}
    os.kill(supervisor.rpc.getPID(), signal.SIGKILL)
    assert set(supervisor.strays()) == children and len(children) == 6  # 5 replicas and Caddy

    assert main(["infra", "down"]) == 0
    assert "nothing was running" not in capsys.readouterr().out
    assert supervisor.strays() == [] and not any(alive(pid) for pid in children)
    assert run_deploy(project, stages=stages_until("health_check")).success


def test_a_load_balancer_port_another_program_holds_is_named(project: Project, capsys):
    """Caddy resumes its last configuration as it starts; with a port of it taken, it exits at once,
    again and again. `up` says so with Caddy's own error, not after waiting for its admin API."""
    assert run_deploy(project, stages=stages_until("service_deployment")).success
    assert main(["infra", "down"]) == 0
    https = deployed_runtime(project).lb.https_port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", https))
        squatter.listen()
        code = main(["infra", "up"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"Caddy exits as it starts: loading initial config: loading new config: http app module: start: " \
           f"listening on 127.0.0.1:{https}: listen tcp 127.0.0.1:{https}: bind: address already in use (another " \
           "program holds that port" in out, out


BLOG = """\
  - name: "blog.allthingslinux.org"
    service: "website"
    replicas: 2
    resources:
      cpu: "100m"
      memory: "128Mi"
"""


def test_a_serving_replica_killed_during_a_roll_loses_no_request(project: Project, tmp_path: Path):
    assert run_deploy(project, stages=stages_until("service_deployment")).success
    wait_until_served(project, API)
    old = replica_pids(project)["backend-api"]
    with Load(project, API, tmp_path / "load.json") as load:
        release(project, "backend-api:1.0.1")
        killer = kill_when_the_roll_starts(project, old[0])
        assert run_deploy(project, stages=stages_until("service_deployment")).success
        killer.join()
    assert load.result["failed"] == 0, load.result["failures"]
    assert len(load.result["releases"]) == 2
    assert not set(old) & set(replica_pids(project)["backend-api"])


def test_a_new_replica_killed_while_starting_fails_the_roll_and_the_next_run_converges(project: Project,
                                                                                      tmp_path: Path):
    assert run_deploy(project, stages=stages_until("service_deployment")).success
    wait_until_served(project, API)
    with Load(project, API, tmp_path / "load.json") as load:
        release(project, "backend-api:1.0.1")
        killer = kill_when_the_roll_starts(project, None)
        stages = []
        first = run_deploy(project, on_stage=stages.append, stages=stages_until("service_deployment"))
        killer.join()
        assert killer.state == "STARTING"
        failed = next(s for s in stages if s.status == "failed")
        assert (first.success, failed.stage) == (False, "service_deployment")
        assert "exited while starting" in failed.detail and "What ran before still serves" in failed.detail
        assert run_deploy(project, stages=stages_until("service_deployment")).success
    assert load.result["failed"] == 0, load.result["failures"]  # the old release served throughout
    assert len(load.result["releases"]) == 2
    runtime = deployed_runtime(project)
    assert runtime.deployed()["services"]["backend-api"]["image"].endswith(":1.0.1")
    assert drift_from_record(runtime) == []


def release(project: Project, image: str) -> None:
    text = project.domains_file.read_text()
    project.domains_file.write_text(text.replace("ghcr.io/allthingslinux/backend-api:1.0.0",
                                                 f"ghcr.io/allthingslinux/{image}"))


def test_terraform_killed_during_apply_then_the_next_run_converges(project: Project):
    validated = validate(load_config(project.domains_file))
    plan = make_plan(project, validated, "interrupted")
    interrupted = BackgroundApply(project, plan)
    kill_terraform_in(plan.workdir)  # the first terraform process apply_plan starts is `apply`

    assert isinstance(interrupted.join(), TerraformError), interrupted.result
    assert run_deploy(project, stages=stages_until("terraform_apply")).success
    runner = terraform(project, validated.loaded.config.state, validated.loaded.config.environment)
    assert not runner.plan(plan.workdir / "plans" / "after.tfplan")  # nothing left to change
    assert set(runner.outputs()["domains"]) == {d.name for d in validated.loaded.config.domains}
