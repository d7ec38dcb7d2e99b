"""Errors: what a collaborator documents becomes one of our errors, and a stage fails with its
message; any other exception is a bug, and fails the stage with its traceback."""

from __future__ import annotations

import errno
import os
import signal
import time

import pytest
from dagster import DagsterEventType, DagsterInstance

from atl_pipeline.gitops import GitSource
from atl_pipeline.orchestration.runner import run_deploy
from atl_pipeline.project import Project, StateError
from atl_pipeline.runtime.local import deployed_runtime
from atl_pipeline.runtime.supervisor import SupervisorError, SupervisorUnavailable, alive

FROM_GIT = {"domain_config": {"commit": "0" * 40}}  # a run of a pushed commit


def failure_of(project: Project, run_id: str):
    instance = DagsterInstance.from_config(str(project.ensure_instance()))
    (record,) = instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_FAILURE).records
    return record.event_log_entry.dagster_event.step_failure_data


def test_a_bug_fails_the_stage_with_its_traceback(project: Project, monkeypatch: pytest.MonkeyPatch):
    def bug(cls, project: Project) -> GitSource:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(project.root / "nowhere"))

    monkeypatch.setattr(GitSource, "of", classmethod(bug))
    stages = []

    outcome = run_deploy(project, stages=["domain_config"], options=FROM_GIT, on_stage=stages.append)

    failure = failure_of(project, outcome.run_id)
    assert not outcome.success and failure.user_failure_data is None
    assert failure.error.cause.cls_name == "FileNotFoundError"
    assert any(", in bug\n" in frame for frame in failure.error.cause.stack)
    (stage,) = stages
    assert stage.detail.startswith(f"FileNotFoundError: [Errno 2] No such file or directory: '{project.root}/nowhere'")
    assert f"its traceback is in the logs of run {outcome.run_id}" in stage.detail


@pytest.mark.slow
def test_a_domain_error_fails_the_stage_with_its_message_only(project: Project, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("ATL_GIT_REMOTE", raising=False)  # and the project is in no git repository
    stages = []

    outcome = run_deploy(project, stages=["domain_config"], options=FROM_GIT, on_stage=stages.append)

    failure = failure_of(project, outcome.run_id)
    message = "no git repository to read the commit from: set ATL_GIT_REMOTE"
    assert failure.user_failure_data.description == message and failure.error.cause is None
    assert [(stage.status, stage.detail) for stage in stages] == [("failed", message)]


@pytest.mark.slow
def test_supervisord_refusing_or_gone_is_a_supervisor_error(project: Project):
    supervisor = deployed_runtime(project).supervisor
    supervisor.ensure_running("")
    with pytest.raises(SupervisorError, match=r"supervisord refused startProcess\('nothing:nothing_0', True\): "
                                              "BAD_NAME") as refused:
        supervisor.start("nothing", ["nothing_0"])
    assert not refused.value.transient

    pid = supervisor.rpc.getPID()
    os.kill(pid, signal.SIGKILL)  # its socket stays behind, refusing connections
    while alive(pid):
        time.sleep(0.05)
    with pytest.raises(SupervisorUnavailable) as gone:
        supervisor.processes()
    assert gone.value.transient and not isinstance(gone.value, OSError)
    assert f"supervisord does not answer on {supervisor.socket} (ConnectionRefusedError" in str(gone.value)
    assert "`atl infra up` starts it" in str(gone.value)


def test_a_full_disk_under_the_state_is_a_state_error_and_a_missing_file_a_bug(project: Project):
    runtime = project.state_dir / "runtime"
    runtime.mkdir(parents=True)
    (runtime / "supervisord.conf").symlink_to("/dev/full")  # a write to it fails: no space left on device
    with pytest.raises(StateError, match=r"cannot write the project state: No space left on device\. The "
                                         rf"project's state \({project.state_dir}\) must be writable"):
        deployed_runtime(project).deploy({}, {})

    with pytest.raises(FileNotFoundError), project.lock():  # a file we wrote, or should have: not the disk's fault
        (project.state_dir / "never-written.json").read_text()
