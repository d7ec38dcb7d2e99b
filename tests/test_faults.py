"""Faults injected into the real processes: the stack converges, and says what happened."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from atl_pipeline.config import load_config
from atl_pipeline.orchestration.runner import run_deploy, stages_until
from atl_pipeline.project import Project
from atl_pipeline.runtime.local import as_output, deployed_runtime
from atl_pipeline.terraform.cli import TerraformError
from atl_pipeline.terraform.stages import make_plan, terraform
from atl_pipeline.validation import validate
from tests.runtime_helpers import wait_until_served
from tests.terraform_helpers import apply_in_thread

API = "api.allthingslinux.org"


def test_caddy_killed_is_restarted_with_its_configuration(project: Project):
    assert run_deploy(project, stages=stages_until("service_deployment")).success
    wait_until_served(project, API)
    runtime = deployed_runtime(project)
    caddy = next(p["pid"] for p in runtime.supervisor.processes() if p["name"] == "caddy")

    os.kill(caddy, signal.SIGKILL)

    wait_until_served(project, API)  # supervisord restarts it; it resumes its last configuration
    restarted = next(p["pid"] for p in runtime.supervisor.processes() if p["name"] == "caddy")
    record = runtime.deployed()
    services = {name: as_output(spec) for name, spec in record["services"].items()}
    assert restarted != caddy and runtime.drift(services, record["domains"]) == []


def test_terraform_killed_during_apply_then_the_next_run_converges(project: Project):
    validated = validate(load_config(project.domains_file))
    plan = make_plan(project, validated, "interrupted")
    thread, outcome = apply_in_thread(project, plan)
    kill_terraform_in(plan.workdir)  # the first terraform process apply_plan starts is `apply`
    thread.join(timeout=60)

    assert isinstance(outcome[0], TerraformError), outcome
    assert run_deploy(project, stages=stages_until("terraform_apply")).success
    runner = terraform(project, validated.loaded.config.state, validated.loaded.config.environment)
    assert not runner.plan(plan.workdir / "plans" / "after.tfplan")  # nothing left to change
    assert set(runner.outputs()["domains"]) == {d.name for d in validated.loaded.config.domains}


def kill_terraform_in(workdir: Path, timeout: float = 60) -> None:
    """SIGKILL the terraform process working in `workdir` as soon as it shows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if (proc / "cwd").resolve() == workdir and b"terraform" in (proc / "cmdline").read_bytes():
                    os.kill(int(proc.name), signal.SIGKILL)
                    return
            except OSError:
                continue
        time.sleep(0.01)
    pytest.fail(f"no terraform process started in {workdir}")


def test_every_process_of_the_stack_listens_on_loopback_only(project: Project):
    """Caddy (its admin API included), Prometheus, the blackbox exporter and every replica."""
    assert run_deploy(project).success
    runtime = deployed_runtime(project)
    pids = {p["pid"] for p in runtime.supervisor.processes() if p["pid"]}
    listening = listening_sockets(pids)

    assert {name for name, _, _ in listening} >= {"caddy", "prometheus", "prometheus-blac", "python3"}
    assert {address for _, address, _ in listening} == {"127.0.0.1"}, listening
    assert (project.state_dir / "runtime").stat().st_mode & 0o077 == 0  # supervisord's socket is in here


def listening_sockets(pids: set[int]) -> list[tuple[str, str, int]]:
    """(process name, address, port) of each TCP socket in LISTEN that these processes hold."""
    inodes: dict[str, str] = {}
    for pid in pids:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd) if fd.is_symlink() else ""
            if target.startswith("socket:["):
                inodes[target[8:-1]] = name
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                found.append((inodes[inode], *_address(local)))
    return found


def _address(hex_address: str) -> tuple[str, int]:
    host, port = hex_address.split(":")
    if len(host) == 8:  # IPv4, little-endian
        return ".".join(str(int(host[i:i + 2], 16)) for i in (6, 4, 2, 0)), int(port, 16)
    return ("::1" if host == "00000000000000000000000001000000" else f"ipv6:{host}"), int(port, 16)
