"""supervisord, started on demand and driven over XML-RPC on a unix socket only its owner can open.

A service release is one program group (`numprocs` = replicas). What each replica runs
(argv, environment, limits) is written to a JSON spec that `atl_pipeline.runtime.launch`
reads, so no configuration value is ever written into supervisord's ini files.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shlex
import shutil
import signal
import sys
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

from atl_pipeline import processes
from atl_pipeline.runtime.rolling import TargetError

MAX_SOCKET_PATH = 107
START_TIMEOUT = 30.0
STOP_GRACE = 15.0  # as stopwaitsecs: what a process has to stop on SIGTERM
REPLICA_LOG_MB = 10  # supervisord rolls a replica's output at this size, keeping one; the log collector keeps the rest


GIVEN_UP = ("STOPPED", "FATAL")  # states supervisord does not leave on its own


class SupervisorError(TargetError):
    """supervisord refused a call (a fault: an unknown name, a program that cannot start), or could not start."""


class SupervisorUnavailable(SupervisorError):
    """supervisord's socket does not answer (not started yet, restarting, or stopped)."""

    transient = True


@dataclass(frozen=True)
class ReplicaSpec:
    """What one replica process runs."""

    argv: list[str]
    env: dict[str, str]
    memory_bytes: int
    nice: int


class Supervisor:
    def __init__(self, root: Path):
        self.root = root
        self.config = root / "supervisord.conf"
        self.socket = root / "sv.sock"  # short: a unix socket path has at most 107 bytes
        self.programs = root / "programs"
        self.specs = root / "specs"
        self.logs = root / "logs"

    @property
    def rpc(self) -> Rpc:
        return Rpc(self)

    def is_running(self) -> bool:
        try:
            return self.rpc.getState()["statename"] == "RUNNING"
        except SupervisorError:
            return False

    def ensure_running(self, always: str) -> None:
        """Start supervisord when it is not running; `always` is ini text of programs it always runs."""
        if len(os.fsencode(self.socket)) > MAX_SOCKET_PATH:
            raise TargetError(f"{self.socket} is longer than a unix socket path may be "
                              f"({MAX_SOCKET_PATH} bytes): move the project to a shorter path")
        for folder in (self.root, self.programs, self.specs, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        self.config.write_text(self._main_config(always))
        if self.is_running():
            self._restart_changed_programs()
            return
        log = self.root / "supervisord.log"
        try:
            started = processes.run([sys.executable, "-m", "supervisor.supervisord", "-c", self.config],
                                    capture_output=True, text=True, env=runtime_environment(), cwd=self.root,
                                    timeout=START_TIMEOUT)
        except processes.TimeoutExpired:
            raise SupervisorError(f"supervisord did not start within {START_TIMEOUT:.0f} s; see {log}") from None
        if started.returncode != 0:
            raise SupervisorError(f"supervisord could not start: {(started.stderr or started.stdout).strip()[-2000:]}"
                                  f"; see {log}")
        deadline = time.monotonic() + START_TIMEOUT
        while not self.is_running():
            if time.monotonic() > deadline:
                raise SupervisorError(f"supervisord did not start; see {log}")
            time.sleep(0.05)

    def _restart_changed_programs(self) -> None:
        """Programs of the main configuration whose settings changed (Caddy's, say) restart."""
        _, changed, _ = self.rpc.reloadConfig()[0]
        for group in changed:
            self.rpc.stopProcessGroup(group, True)
            self.rpc.removeProcessGroup(group)
            self.rpc.addProcessGroup(group)

    def ensure_program(self, name: str, argv: list[str]) -> bool:
        """Run `argv` (our own paths and flags, never configuration values) as the program `name`;
        True when it was started or restarted because its command changed."""
        command = " ".join(shlex.quote(ini_value(argument)) for argument in argv)
        (self.programs / f"{name}.conf").write_text(f"""\
; Written by atl-pipeline; edits are overwritten.
[program:{name}]
command={command}
autorestart=true
startsecs=1
stopsignal=TERM
stdout_logfile={ini_value(self.logs)}/{name}.log
redirect_stderr=true
""")
        added, changed, _ = self.rpc.reloadConfig()[0]
        if name in changed:
            self.rpc.stopProcessGroup(name, True)
            self.rpc.removeProcessGroup(name)
        if name in added or name in changed:
            self.rpc.addProcessGroup(name)
            return True
        return False

    def processes(self) -> list[dict]:
        """supervisord's process infos: group, name, pid, statename, ..."""
        return self.rpc.getAllProcessInfo()

    def add_group(self, group: str, replicas: list[ReplicaSpec]) -> None:
        """Write the group's specs and program, and start its replicas (returns once they run)."""
        specs = self.specs / group
        specs.mkdir(parents=True, exist_ok=True)
        for index, replica in enumerate(replicas):
            (specs / f"{index}.json").write_text(json.dumps(asdict(replica)))
        (self.programs / f"{group}.conf").write_text(self._program(group, len(replicas)))
        self.rpc.reloadConfig()
        self.rpc.addProcessGroup(group)

    def start(self, group: str, names: list[str]) -> None:
        """Start these processes of the group again (stopped by hand, or given up on: GIVEN_UP)."""
        for name in names:
            self.rpc.startProcess(f"{group}:{name}", True)

    def remove_group(self, group: str) -> None:
        """Stop the group's processes (waiting for them) and forget it."""
        try:
            self.rpc.stopProcessGroup(group, True)
            self.rpc.removeProcessGroup(group)
        except SupervisorError as error:
            if "BAD_NAME" not in str(error):
                raise
        (self.programs / f"{group}.conf").unlink(missing_ok=True)
        shutil.rmtree(self.specs / group, ignore_errors=True)
        self.rpc.reloadConfig()

    def shutdown(self) -> None:
        """Stop every process and supervisord itself; the program files stay for the next start.
        When supervisord is gone (killed, crashed), the processes it left behind are stopped."""
        if not self.is_running():
            self.stop_strays()
            return
        pid = self.rpc.getPID()
        self.rpc.shutdown()
        deadline = time.monotonic() + START_TIMEOUT
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def strays(self) -> list[int]:
        """The pids of processes this project's supervisord started and that outlived it: supervisord
        marks each child with its own socket (SUPERVISOR_SERVER_URL), which no other process carries."""
        marker = f"SUPERVISOR_SERVER_URL=unix://{self.socket}".encode()
        found = []
        for process in Path("/proc").glob("[0-9]*"):
            try:
                if marker in (process / "environ").read_bytes().split(b"\0"):
                    found.append(int(process.name))
            except OSError:  # gone meanwhile, or another user's
                continue
        return found

    def stop_strays(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM what supervisord left behind, then SIGKILL what still runs after `grace` seconds."""
        strays = self.strays()
        for signal_number, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0)):
            for pid in strays:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal_number)
            deadline = time.monotonic() + wait
            while (strays := [pid for pid in strays if alive(pid)]) and time.monotonic() < deadline:
                time.sleep(0.05)

    def _main_config(self, always: str) -> str:
        root = ini_value(self.root)
        return f"""\
; Written by atl-pipeline; edits are overwritten.
[unix_http_server]
file={ini_value(self.socket)}
chmod=0700

[supervisord]
logfile={root}/supervisord.log
pidfile={root}/supervisord.pid
childlogdir={ini_value(self.logs)}
directory={root}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

{always}
[include]
files = {ini_value(self.programs)}/*.conf
"""

    def _program(self, group: str, replicas: int) -> str:
        launch = f"{ini_value(Path(sys.executable))} -m atl_pipeline.runtime.launch"
        return f"""\
; Written by atl-pipeline; edits are overwritten.
[program:{group}]
command={launch} {ini_value(self.specs / group)}/%(process_num)d.json
process_name=%(program_name)s_%(process_num)d
numprocs={replicas}
autostart=true
autorestart=true
startsecs=1
startretries=10
stopsignal=TERM
stopwaitsecs=15
stdout_logfile={ini_value(self.logs)}/%(program_name)s_%(process_num)d.log
stdout_logfile_maxbytes={REPLICA_LOG_MB}MB
stdout_logfile_backups=1
redirect_stderr=true
"""


class Rpc:
    """supervisord's XML-RPC methods (`rpc.getState()`...) over its unix socket. A fault it answers
    raises SupervisorError; a socket that does not answer, SupervisorUnavailable."""

    def __init__(self, supervisor: Supervisor):
        self.supervisor = supervisor
        transport = SupervisorTransport(None, None, f"unix://{supervisor.socket}")
        self.proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def __getattr__(self, method: str) -> Callable:
        def call(*args):
            try:
                return getattr(self.proxy, method)(*args)
            except xmlrpc.client.Error as error:  # a Fault, or an HTTP status other than 200
                detail = error.faultString if isinstance(error, xmlrpc.client.Fault) else str(error)
                raise SupervisorError(f"supervisord refused {method}({', '.join(map(repr, args))}): {detail}; "
                                      f"see the logs in "
                                      f"{self.supervisor.logs}") from None
            except (OSError, http.client.HTTPException) as error:
                raise SupervisorUnavailable(
                    f"supervisord does not answer on {self.supervisor.socket} ({type(error).__name__}: {error}): "
                    "it is not running, or is restarting. `atl infra up` starts it and what it runs; see "
                    f"{self.supervisor.root / 'supervisord.log'}") from None
        return call


INHERITED = ("HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER")


def runtime_environment() -> dict[str, str]:
    """What supervisord, Caddy and the replicas inherit: a few harmless variables, never the
    pipeline's secrets, and PATH with this Python's bin folder first (so `python3` is ours)."""
    bin_dir = str(Path(sys.executable).parent)
    inherited = {name: os.environ[name] for name in INHERITED if name in os.environ}
    return {**inherited, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}


def ini_value(path: Path | str) -> str:
    """A path as a supervisord ini value: `%` escaped; line breaks, quotes and comments refused."""
    text = str(path)
    if any(char in text for char in "\r\n;\""):
        raise TargetError(f"{text!r} cannot be written into supervisord's configuration: rename it")
    return text.replace("%", "%%")


def alive(pid: int) -> bool:
    """The process exists and has not exited (a zombie waiting for its parent has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
