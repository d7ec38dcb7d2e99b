"""The Terraform CLI, run as a subprocess with clear errors.

Every command runs non-interactively (`-input=false -no-color`, TF_IN_AUTOMATION), with a
CLI configuration of our own (a plugin cache under .atl/), a state-lock timeout and a
time limit. Error text passes through the redactor before anyone sees it; the JSON that
commands print is returned as it is, for the pipeline to parse (it is never logged whole).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from atl_pipeline import processes
from atl_pipeline.errors import AtlError
from atl_pipeline.files import update_file
from atl_pipeline.terraform.render import hcl

COMMAND_TIMEOUT = 600.0
GRACE = 30.0  # after SIGINT, the time Terraform has to release its lock and stop
# PostgreSQL going away under Terraform's pg backend; a refused or timed-out dial is matched by address
POSTGRES_GONE = r"the database system is (?:starting up|shutting down)|terminating connection due to"


class TerraformError(AtlError):
    """A Terraform command failed; the message says what to do."""


class StateLocked(TerraformError):
    """Another operation holds the state lock (not transient: Terraform has waited ATL_LOCK_TIMEOUT for it)."""


class BackendUnavailable(TerraformError):
    """Terraform could not reach its state backend (a database restarting, say)."""

    transient = True


class StateNotSaved(TerraformError):
    """An apply changed resources but could not write the state: never retried, it would apply twice."""


class StalePlan(TerraformError):
    """The state changed after the plan was made."""


@dataclass
class Terraform:
    workdir: Path
    home: Path  # holds the CLI configuration and the plugin cache
    env: Mapping[str, str] = field(default_factory=dict)
    redact: Callable[[str], str] = lambda text: text
    timeout: float = COMMAND_TIMEOUT
    lock_timeout: str = "60s"
    backend: str = "local"
    backend_address: str = ""  # host:port of a remote state backend

    def init(self) -> None:
        self.run("init", "-input=false", "-no-color", "-migrate-state", "-force-copy",
                 f"-lock-timeout={self.lock_timeout}")

    def plan(self, out: Path, *, targets: Sequence[str] = (), destroy: bool = False) -> bool:
        """Write a plan to `out` (of only `targets`, or destroying everything); True when it changes anything."""
        args = ["plan", "-input=false", "-no-color", "-detailed-exitcode", f"-lock-timeout={self.lock_timeout}",
                f"-out={out}", *(f"-target={target}" for target in targets), *(["-destroy"] if destroy else [])]
        return self.run(*args, ok=(0, 2)).returncode == 2

    def show(self, plan: Path) -> dict:
        return json.loads(self.run("show", "-json", "-no-color", str(plan)).stdout)

    def apply(self, plan: Path) -> str:
        return self.run("apply", "-input=false", "-no-color", f"-lock-timeout={self.lock_timeout}", str(plan)).stdout

    def outputs(self) -> dict:
        raw = json.loads(self.run("output", "-json", "-no-color").stdout)
        return {name: output["value"] for name, output in raw.items()}

    def state_serial(self) -> int:
        return self.pulled()[1]

    def pulled(self) -> tuple[dict, int]:
        """The state's outputs (name -> value) and serial, from one `terraform state pull`."""
        text = self.run("state", "pull").stdout
        state = json.loads(text) if text.strip() else {}
        return {name: output["value"] for name, output in state.get("outputs", {}).items()}, state.get("serial", 0)

    def drifted(self) -> bool:
        """A refresh-only plan: True when what exists differs from the state."""
        args = ["plan", "-refresh-only", "-input=false", "-no-color", "-detailed-exitcode",
                f"-lock-timeout={self.lock_timeout}"]
        return self.run(*args, ok=(0, 2)).returncode == 2

    def unformatted(self) -> list[str]:
        """The files `terraform fmt -check` would rewrite."""
        return self.run("fmt", "-check", "-list=true", "-no-color", ok=(0, 3)).stdout.split()

    def run(self, *args: str, ok: tuple[int, ...] = (0,)) -> processes.CompletedProcess:
        binary = shutil.which("terraform")
        if binary is None:
            raise TerraformError("terraform is not on PATH: install Terraform 1.5 or newer")
        process = processes.start([binary, *args], cwd=self.workdir, env=self._environment(), text=True,
                                   stdin=processes.DEVNULL, stdout=processes.PIPE, stderr=processes.PIPE,
                                   start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=self.timeout)
        except processes.TimeoutExpired:
            stdout, stderr = self._interrupt(process)
            raise TerraformError(f"terraform {args[0]} took longer than {self.timeout:.0f} s and was "
                                 f"interrupted: {self._error_text(self.redact(stderr)) or 'no output'}") from None
        if process.returncode not in ok:
            raise self._error(args[0], self.redact(stderr or stdout))
        return processes.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def _environment(self) -> dict[str, str]:
        self.home.mkdir(parents=True, exist_ok=True)
        cache = self.home / "plugin-cache"
        cache.mkdir(exist_ok=True)
        settings = self.home / "terraformrc"
        text = f"plugin_cache_dir = {hcl(str(cache))}\n"
        update_file(settings, text)
        return {**os.environ, "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "TF_CLI_CONFIG_FILE": str(settings),
                "CHECKPOINT_DISABLE": "1", **self.env}

    def _interrupt(self, process: processes.Popen) -> tuple[str, str]:
        """Ask Terraform to stop as Ctrl-C would (it releases its lock), then kill it."""
        os.killpg(process.pid, signal.SIGINT)
        try:
            return process.communicate(timeout=GRACE)
        except processes.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            return process.communicate()

    def _error(self, command: str, output: str) -> TerraformError:
        if "Error acquiring the state lock" in output:
            return StateLocked(self._held_lock(output))
        if "errored.tfstate" in output:
            return StateNotSaved(f"terraform {command} changed resources but could not save the state: "
                                 f"{self._error_text(output)}\nTerraform wrote it to errored.tfstate in "
                                 f"{self.workdir}. Once the {self.backend} backend answers, run `terraform state "
                                 "push errored.tfstate` there, then run the pipeline again")
        if self._backend_unreachable(output):
            return BackendUnavailable(f"terraform {command} could not reach the {self.backend} state backend: "
                                      f"{self._error_text(output)}")
        if "Failed to query available provider packages" in output or "Failed to install provider" in output:
            return TerraformError(f"terraform {command} could not get the providers the templates need: "
                                  f"{self._error_text(output)}\nThis machine must reach registry.terraform.io once; "
                                  f"the providers are then kept in {self.home / 'plugin-cache'}")
        if "Saved plan is stale" in output:
            return StalePlan("the Terraform state changed after this plan was made, so it was not applied: "
                             "plan again (materialize terraform_plan, or run `atl infra up`)")
        return TerraformError(f"terraform {command} failed: {self._error_text(output)}")

    def _backend_unreachable(self, output: str) -> bool:
        if self.backend == "local":
            return False
        address = re.escape(self.backend_address)
        dial = rf"dial tcp {address}: (?:connect: connection refused|i/o timeout)"
        reset = rf"(?:read|write) tcp \S+->{address}: (?:read|write): (?:connection reset by peer|broken pipe)"
        return bool(re.search(f"{dial}|{reset}|{POSTGRES_GONE}" if self.backend_address else POSTGRES_GONE, output))

    def _held_lock(self, output: str) -> str:
        """Who holds the lock and how to release it; nothing here ever releases it."""
        waited = f"the Terraform state is locked by another operation; waited {self.lock_timeout}. "
        if self.backend == "pg":  # an advisory lock of the holder's session; Terraform's lock info is our own
            return waited + (
                "If that operation is still running, wait for it. If it hung or its machine is gone, its "
                "PostgreSQL session still holds the lock: find it with `SELECT pid, client_addr, backend_start "
                "FROM pg_locks JOIN pg_stat_activity USING (pid) WHERE locktype = 'advisory'` and end it with "
                "`SELECT pg_terminate_backend(PID)`")
        lock = dict(re.findall(r"^\s*(ID|Operation|Who|Created):\s*(.*)$", output, re.M))
        return waited + (
            f"It is held by {lock.get('Operation', '?')} of {lock.get('Who', '?')} since {lock.get('Created', '?')}. "
            "If that operation is still running, wait for it; if it died, release the lock with "
            f"`terraform force-unlock {lock.get('ID', 'LOCK_ID')}` in {self.workdir}")

    @staticmethod
    def _error_text(output: str) -> str:
        """Terraform's `Error:` paragraphs, without the box-drawing around them."""
        lines = [re.sub(r"^[\s│╷╵]+", "", line).rstrip() for line in output.splitlines()]
        start = next((i for i, line in enumerate(lines) if line.startswith("Error")), 0)
        return "\n".join(line for line in lines[start:] if line).strip()[:4000]
