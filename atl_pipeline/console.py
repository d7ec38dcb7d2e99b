"""The operator console: the Dagster UI (`dg dev`, webserver and daemon) behind a Caddy
front that only the console's own pages can drive.

`dg dev` listens on a loopback port picked at start that only the front is told
about. The front listens where the operator opens the console and refuses, before Dagster
sees them:
- a `Host` that is not one of the console's own names (a page that rebinds its DNS name
  to 127.0.0.1 sends its own name);
- a request the browser marks as coming from another site (`Sec-Fetch-Site`), or one that
  carries another page's `Origin` (a form, a `fetch`, a WebSocket of another page);
- a POST whose body is not declared as JSON: Dagster runs the query in the URL of a
  `text/plain` POST, and takes any Content-Type that contains "application/json" (such as
  `text/plain;application/json`, which a page may send without asking) as JSON;
- on /graphql, anything but a POST or the WebSocket of the UI's subscriptions: Dagster runs
  the query in the URL of a GET, mutations included, so an `<img>` could launch a run.

The UI itself only POSTs JSON to /graphql and opens a WebSocket there, from its own origin.

With ATL_WEBHOOK_SECRET set, a POST to /hooks/git goes to the push receiver before any of
these refusals (a forge calls it under the name it knows): the receiver takes only what is
signed with that secret (atl_pipeline/webhooks.py), and deploys the branch at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from atl_pipeline import processes
from atl_pipeline.errors import AtlError
from atl_pipeline.orchestration.receiver import PATH as PUSH_PATH
from atl_pipeline.orchestration.receiver import SECRET_VARIABLE, Receiver
from atl_pipeline.project import Project

DEFAULT_PORT = 3000
READY_TIMEOUT = 180.0
STOP_GRACE = 20.0  # seconds for `dg dev` to stop its webserver, daemon and runs before it is killed
SECOND = 1_000_000_000  # Caddy durations in JSON are nanoseconds
JSON_TYPES = ["application/json", "application/json;*"]  # the parameters, such as a charset, may follow
ANY_ADDRESS = {"0.0.0.0", "::", ""}


class ConsoleError(AtlError):
    """The console could not start, or a part of it stopped."""


@dataclass(frozen=True)
class Front:
    """Where the console answers, under which names, and the webserver's private port behind it."""

    host: str
    port: int
    webserver_port: int
    names: tuple[str, ...] = ()  # further `host:port` the browser may use (an SSH tunnel's, say)
    receiver_port: int | None = None  # the push receiver's, when push notifications are on

    @property
    def url(self) -> str:
        return f"http://{self.own_hosts[0]}"

    @property
    def own_hosts(self) -> list[str]:
        """The `Host` values the console answers to: its address first."""
        address = [] if self.host in ANY_ADDRESS else [_host_port(self.host, self.port)]
        loopback = [f"127.0.0.1:{self.port}", f"localhost:{self.port}"]
        return list(dict.fromkeys([*address, *loopback, *self.names]))

    @property
    def own_origins(self) -> list[str]:
        return [f"http://{host}" for host in self.own_hosts]

    @property
    def webserver(self) -> str:
        return f"127.0.0.1:{self.webserver_port}"


def front_config(front: Front) -> dict:
    """Caddy's configuration of the front: the refusals in order, then the webserver."""
    origins = front.own_origins
    ui_websocket = {"method": ["GET"], "header": {"Upgrade": ["websocket"], "Origin": origins}}
    # a push notification is signed (the receiver checks it), and comes from a forge under any name
    pushes = [{"match": [{"path": [PUSH_PATH], "method": ["POST"]}], "terminal": True, "handle": [
        {"handler": "reverse_proxy", "upstreams": [{"dial": f"127.0.0.1:{front.receiver_port}"}]}]}]
    routes = [
        *(pushes if front.receiver_port else []),
        _refuse({"not": [{"header": {"Host": front.own_hosts}}]}, 403,
                f"This console answers at {front.url} only: open it there.\n"),
        _refuse({"header": {"Sec-Fetch-Site": ["cross-site", "same-site"]}}, 403,
                "Refused: a request from another site.\n"),
        _refuse({"header": {"Origin": []}, "not": [{"header": {"Origin": origins}}]}, 403,
                "Refused: a request from another origin.\n"),
        _refuse({"method": ["POST"], "not": [{"header": {"Content-Type": JSON_TYPES}}]}, 415,
                "Refused: a POST must carry JSON (Content-Type: application/json).\n"),
        _refuse({"path": ["/graphql"], "not": [{"method": ["POST"]}, ui_websocket]}, 405,
                "Refused: GraphQL is a POST of JSON, or the UI's WebSocket.\n"),
        {"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": front.webserver}]}]},
    ]
    return {
        # Caddy's default admin endpoint, localhost:2019, is the stack's Caddy's: this one has none
        "admin": {"disabled": True, "config": {"persist": False}},
        "apps": {"http": {
            "grace_period": 2 * SECOND,  # the UI's WebSockets would hold a graceful stop open
            "servers": {"console": {"listen": [_host_port(front.host, front.port)],
                                    "automatic_https": {"disable": True}, "routes": routes}},
        }},
    }


def _refuse(match: dict, status: int, reason: str) -> dict:
    return {"match": [match], "terminal": True, "handle": [{
        "handler": "static_response", "status_code": status, "body": reason,
        "headers": {"Content-Type": ["text/plain; charset=utf-8"]}}]}


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class Part:
    """One process of the console, in its own process group, with its log."""

    name: str
    process: processes.Popen
    log: Path
    stop_signal: signal.Signals

    def signal_group(self, number: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, number)


class Console:
    """`dg dev` on a private loopback port and Caddy in front of it, under `.atl/console/`."""

    def __init__(self, project: Project, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 names: tuple[str, ...] = ()):
        """Check that the console can start here; `start` starts it."""
        self.project, self.root = project, project.state_dir / "console"
        self.workspace = project.root / "workspace.yaml"
        if not self.workspace.is_file():
            raise ConsoleError(f"{self.workspace} does not exist: the console loads the code location it names")
        if not _free(host, port):
            raise ConsoleError(f"{_host_port(host, port)} is in use (another console?): stop that program, "
                               "or choose another port (--port, or PORT= for make dev)")
        webserver_port = _free_port()
        secret = os.environ.get(SECRET_VARIABLE)
        self.receiver = Receiver(("127.0.0.1", 0), f"http://127.0.0.1:{webserver_port}", secret) if secret else None
        self.front = Front(host, port, webserver_port, names, self.receiver and self.receiver.server_address[1])
        self.parts: list[Part] = []

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        config = self.root / "caddy.json"
        config.write_text(json.dumps(front_config(self.front), indent=2))
        bin_dir = Path(sys.executable).parent
        self._spawn("the Dagster webserver and daemon (dg dev)", signal.SIGINT, "dagster.log",
                    [bin_dir / "dg", "dev", "-w", self.workspace, "-h", "127.0.0.1",
                     "-p", str(self.front.webserver_port)],
                    cwd=self.project.root, env={**os.environ, "ATL_PROJECT_DIR": str(self.project.root),
                                                "DAGSTER_HOME": str(self.project.ensure_instance()),
                                                "VIRTUAL_ENV": sys.prefix})  # dg's own venv: it warns otherwise
        self._spawn("the console's front (Caddy)", signal.SIGTERM, "caddy.log",
                    [bin_dir / "caddy", "run", "--config", config], cwd=self.root,
                    # not the pipeline's environment: Caddy needs none of it
                    env={"HOME": str(self.root), "XDG_DATA_HOME": str(self.root / "data"),
                         "XDG_CONFIG_HOME": str(self.root / "config")})
        if self.receiver:
            self.receiver.serve_in_background()

    def _spawn(self, name: str, stop_signal: signal.Signals, log: str, argv: list, cwd: Path,
               env: dict[str, str]) -> None:
        """In a session of its own, so that only the console gets the terminal's Ctrl-C, and stops it."""
        with (self.root / log).open("w") as output:
            process = processes.start(argv, cwd=cwd, env=env, stdin=processes.DEVNULL, stdout=output,
                                      stderr=processes.STDOUT, start_new_session=True)
        self.parts.append(Part(name, process, self.root / log, stop_signal))

    def wait_ready(self) -> None:
        """Until the UI answers a query through the front."""
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._answers():
            if exited := self.exited():
                raise ConsoleError(exited)
            if time.monotonic() > deadline:
                raise ConsoleError(f"the console did not answer within {READY_TIMEOUT:.0f} s; logs: "
                                   + ", ".join(str(part.log) for part in self.parts))
            time.sleep(0.5)

    def _answers(self) -> bool:
        try:
            response = requests.post(f"{self.front.url}/graphql", json={"query": "{ version }"}, timeout=5)
            return response.ok and bool(response.json().get("data", {}).get("version"))
        except (requests.RequestException, ValueError):
            return False

    def exited(self) -> str | None:
        """What stopped, and where its log is, once a part has exited."""
        for part in self.parts:
            if (code := part.process.poll()) is not None:
                return f"{part.name} stopped (exit code {code}); its log: {part.log}"
        return None

    def wait(self) -> str:
        """Block until a part exits; say which."""
        while not (exited := self.exited()):
            time.sleep(0.5)
        return exited

    def stop(self) -> None:
        """Ask each part to stop, give them STOP_GRACE seconds, then kill what is left of their groups."""
        if self.receiver:
            self.receiver.shutdown()
            self.receiver.server_close()
        for part in self.parts:
            part.signal_group(part.stop_signal)
        deadline = time.monotonic() + STOP_GRACE
        for part in self.parts:
            with contextlib.suppress(processes.TimeoutExpired):
                part.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            part.signal_group(signal.SIGKILL)  # and the run workers or helpers it left behind
            part.process.wait()


def _free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Caddy does: closed connections don't count
        try:
            probe.bind((host, port))
            return True
        except OSError:
            return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
