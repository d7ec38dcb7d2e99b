"""The hostile corpus through the whole pipeline, as well as `atl infra validate`: each file
is refused by the first stage with its located message, in bounded time and memory, and
the stack that runs is not touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from atl_pipeline.cli import main
from atl_pipeline.orchestration.runner import run_deploy, stages_until
from atl_pipeline.project import Project
from atl_pipeline.runtime.local import deployed_runtime
from tests.conftest import copy_project, kill_stack
from tests.runtime_helpers import wait_until_served
from tests.test_loader import HOSTILE
from tests.worst_cases import atl

pytestmark = pytest.mark.slow  # hostile files against a deployed stack

API = "api.allthingslinux.org"


@pytest.fixture(scope="module")
def running(tmp_path_factory) -> Project:
    """The example deployed once for the whole corpus."""
    project = copy_project(tmp_path_factory.mktemp("hostile") / "project")
    assert run_deploy(project, stages=stages_until("service_deployment")).success
    wait_until_served(project, API)
    yield project
    kill_stack(project)


def what_runs(project: Project) -> tuple:
    """The processes (with their pids), Caddy's configuration, the deployment record and the state."""
    runtime = deployed_runtime(project)
    state = project.state_dir / "terraform" / "production" / "terraform.tfstate"
    return (sorted((p["name"], p["pid"], p["statename"]) for p in runtime.supervisor.processes()),
            runtime.caddy.config(), runtime.deployed_file.read_bytes(), state.read_bytes())


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_file_is_refused_by_validate_and_by_the_pipeline(running: Project, case, tmp_path: Path,
                                                                    hang_guard, capsys):
    content, message, line, _ = HOSTILE[case]
    path = tmp_path / "domains.yml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = what_runs(running)

    assert main(["infra", "validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}:{line}:" in out and message in out, out

    stages = []
    outcome = run_deploy(running, domains_file=path, on_stage=stages.append)
    assert not outcome.success
    assert [(s.stage, s.status) for s in stages][:2] == [("domain_config", "failed"), ("validated_config", "skipped")]
    assert f"{path}:{line}:" in stages[0].detail and message in stages[0].detail, stages[0].detail
    assert what_runs(running) == before
    assert wait_until_served(running, API).ok


def test_the_pipeline_refuses_a_huge_file_and_an_alias_bomb_in_bounded_memory(running: Project, tmp_path: Path):
    """`atl infra up` in its own process: its peak resident memory is what a refused file costs."""
    huge = tmp_path / "huge.yml"
    with huge.open("wb") as stream:
        for _ in range(60 * 1024):
            stream.write(b"# " + b"x" * 1021 + b"\n")
    bomb = tmp_path / "bomb.yml"
    bomb.write_text(HOSTILE["alias bomb"][0])
    syntax_error = tmp_path / "broken.yml"
    syntax_error.write_text(HOSTILE["syntax error"][0])
    baseline = atl("infra", "up", "-f", str(syntax_error), cwd=running.root).peak_bytes
    for path, message in ((huge, "larger than"), (bomb, "expands to more than")):
        answer = atl("infra", "up", "-f", str(path), cwd=running.root)
        assert answer.code == 1 and message in answer.output, answer.output
        assert answer.peak_bytes < baseline + 64 * 2**20, (
            f"{path.name}: {answer.peak_bytes / 2**20:.0f} MiB against {baseline / 2**20:.0f}")
