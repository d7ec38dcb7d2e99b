"""Helpers for tests that contend for Terraform's state lock."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import threading
import time
from pathlib import Path

from atl_pipeline.project import Project
from atl_pipeline.terraform.stages import TerraformPlan, apply_plan


def use_pg(project: Project, conn_env: str, schema: str = "") -> None:
    """The project's Terraform state in PostgreSQL, its connection string in the variable `conn_env`."""
    text = project.domains_file.read_text()
    state = f"state:\n  backend: pg\n  conn_str: env:{conn_env}\n" + (f"  schema_name: {schema}\n" if schema else "")
    project.domains_file.write_text(text.replace("services:\n", state + "\nservices:\n", 1))


class held_lock:
    """`terraform console` in `workdir` holds the state lock for as long as it runs.

    It only answers on a terminal, so it runs on a pseudo-terminal; once it has evaluated
    an expression, it holds the lock.
    """

    def __init__(self, workdir: Path, env: dict[str, str] | None = None):
        self.workdir, self.env = workdir, {**os.environ, **(env or {})}

    def __enter__(self) -> held_lock:
        self.terminal, child = pty.openpty()
        self.console = subprocess.Popen(["terraform", "console"], cwd=self.workdir, env=self.env,
                                        stdin=child, stdout=child, stderr=child, start_new_session=True)
        os.close(child)
        os.write(self.terminal, b'"held-${1 + 1}"\n')
        seen = b""
        while b"held-2" not in seen:
            seen += os.read(self.terminal, 4096)
        return self

    def __exit__(self, *exc) -> None:
        os.write(self.terminal, b"exit\n")
        self.console.wait(timeout=30)
        self.released_at = time.monotonic()
        os.close(self.terminal)


def wait_for_terraform_in(workdir: Path, command: str = "") -> int:
    """The pid of a terraform process (running `command`, when given) in `workdir`, as soon as one runs."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                ours = b"terraform" in argv[0] and (proc / "cwd").resolve() == workdir  # the cheap test first
                if ours and (not command or argv[1:2] == [command.encode()]):
                    return int(proc.name)
            except OSError:
                continue
        time.sleep(0.01)
    raise AssertionError(f"no terraform process started in {workdir}")


def kill_terraform_in(workdir: Path) -> None:
    """SIGKILL the terraform process working in `workdir` as soon as it shows."""
    os.kill(wait_for_terraform_in(workdir), signal.SIGKILL)


class BackgroundApply:
    """`apply_plan` in a thread: its result (or exception) and when it finished."""

    def __init__(self, project: Project, plan: TerraformPlan):
        self.result: object = None
        self.finished_at: float | None = None
        self.thread = threading.Thread(target=self._work, args=(project, plan))
        self.thread.start()

    def _work(self, project: Project, plan: TerraformPlan) -> None:
        try:
            self.result = apply_plan(project, plan)
        except Exception as error:  # noqa: BLE001 - the caller inspects it
            self.result = error
        self.finished_at = time.monotonic()

    def join(self, timeout: float = 120) -> object:
        self.thread.join(timeout=timeout)
        assert not self.thread.is_alive(), "the apply did not finish"
        return self.result
