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
  the query in the URL of a GET, mutations included, so an `<img>` could launch a run;
- any other write: every method but GET and HEAD anywhere else (Dagster's `/report_asset_*`
  endpoints would take made-up materializations, checks and observations past the auditor; a
  route a later Dagster adds is refused alike). Dagster runs every document sent on the
  WebSocket as a subscription, so no mutation passes there.

The UI itself only POSTs JSON to /graphql, opens a WebSocket there and GETs the rest, from its
own origin.

With a forge's account in domains.yml's `service_accounts` (or ATL_WEBHOOK_SECRET set), a POST to
/hooks/git goes to the push receiver before any of these refusals (a forge calls it under the name
it knows): the receiver takes only what is signed with an account's secret (atl_pipeline/webhooks.py),
and deploys the branch at once.

With `operators` in domains.yml, the front speaks HTTPS under `console.hostname` and everyone signs
in; viewers reach a read-only webserver, operators the full one through the auditor (access.py).
Accounts added to or removed from domains.yml take effect while the console runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
from dagster import DagsterInstance

from atl_pipeline import files, processes
from atl_pipeline.config import load_config
from atl_pipeline.console.access import Access, AccessError, access_of
from atl_pipeline.console.auditor import USER_HEADER, Auditor
from atl_pipeline.errors import AtlError
from atl_pipeline.findings import ConfigError
from atl_pipeline.orchestration.receiver import PATH as PUSH_PATH
from atl_pipeline.orchestration.receiver import SECRET_VARIABLE, Receiver
from atl_pipeline.project import Project

DEFAULT_PORT = 3000
READY_TIMEOUT = 180.0
STOP_GRACE = 20.0  # seconds for `dg dev` to stop its webserver, daemon and runs before it is killed
SECOND = 1_000_000_000  # Caddy durations in JSON are nanoseconds
JSON_TYPES = ["application/json", "application/json;*"]  # the parameters, such as a charset, may follow
ANY_ADDRESS = {"0.0.0.0", "::", ""}
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


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
    access: Access = Access("localhost")
    readonly_port: int | None = None  # the viewers' webserver, with sign-in
    auditor_port: int | None = None  # the operators' way to the webserver's GraphQL, with sign-in
    admin_socket: str = ""  # with sign-in, Caddy's admin endpoint, to take changed accounts at once

    @property
    def scheme(self) -> str:
        return "https" if self.access.signs_in else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.own_hosts[0]}"

    @property
    def own_hosts(self) -> list[str]:
        """The `Host` values the console answers to: its name (with sign-in) or address first."""
        address = [] if self.host in ANY_ADDRESS else [_host_port(self.host, self.port)]
        named = [_host_port(self.access.hostname, self.port)] if self.access.signs_in else []
        loopback = [f"127.0.0.1:{self.port}", f"localhost:{self.port}"]
        return list(dict.fromkeys([*named, *address, *loopback, *self.names]))

    @property
    def own_origins(self) -> list[str]:
        return [f"{self.scheme}://{host}" for host in self.own_hosts]

    @property
    def certificate_names(self) -> list[str]:
        return list(dict.fromkeys(host.rsplit(":", 1)[0].strip("[]") for host in self.own_hosts))

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
        _refuse({"not": [{"method": ["GET", "HEAD"]}, {"path": ["/graphql"], "method": ["POST"]}]}, 405,
                "Refused: the console takes changes only as GraphQL mutations (POST /graphql), where each is "
                "recorded.\n"),
        *(_signed_in(front) if front.access.signs_in else [{"handle": [_proxy(front.webserver)]}]),
    ]
    server = {"listen": [_host_port(front.host, front.port)], "automatic_https": {"disable": True}, "routes": routes}
    apps = {"http": {"grace_period": 2 * SECOND,  # the UI's WebSockets would hold a graceful stop open
                     "servers": {"console": server}}}
    if front.access.signs_in:
        server["tls_connection_policies"] = [{"default_sni": front.access.hostname}]
        names = front.certificate_names
        apps["tls"] = {"certificates": {"automate": names}, "disable_ocsp_stapling": True,
                       "automation": {"policies": [{"subjects": names, "issuers": [{"module": "internal"}]}]}}
    # Caddy's default admin endpoint, localhost:2019, is the stack's Caddy's: this one has none, or a socket
    admin = {"listen": f"unix/{front.admin_socket}"} if front.admin_socket else {"disabled": True}
    return {"admin": {**admin, "config": {"persist": False}}, "apps": apps}


def _signed_in(front: Front) -> list[dict]:
    """Everyone signs in; operators' GraphQL through the auditor, the rest of theirs to the webserver,
    viewers' to the read-only one."""
    accounts = [{"username": name, "password": hashed} for name, (_, hashed) in sorted(front.access.accounts.items())]
    operator = {"vars": {"{http.auth.user.id}": front.access.named("operator")}}
    return [
        {"handle": [{"handler": "authentication", "providers": {"http_basic": {
            "accounts": accounts, "hash": {"algorithm": "bcrypt"}, "hash_cache": {}, "realm": "atl console"}}}]},
        {"match": [{**operator, "path": ["/graphql"], "method": ["POST"]}], "terminal": True,
         "handle": [_proxy(f"127.0.0.1:{front.auditor_port}", {USER_HEADER: ["{http.auth.user.id}"]})]},
        {"match": [operator], "terminal": True, "handle": [_proxy(front.webserver)]},
        {"handle": [_proxy(f"127.0.0.1:{front.readonly_port}")]},
    ]


def _proxy(upstream: str, headers: dict[str, list[str]] | None = None) -> dict:
    """To `upstream`, without the caller's credentials, with `headers` set (over any the caller sent)."""
    request = {"delete": ["Authorization"], **({"set": headers} if headers else {})}
    return {"handler": "reverse_proxy", "upstreams": [{"dial": upstream}], "headers": {"request": request}}


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
        self.stamp, access = self._read_access()
        if host not in LOOPBACK and not access.signs_in:
            raise ConsoleError(f"--host {host} opens the console beyond this machine, and no one is asked to sign "
                               "in: declare `operators` in domains.yml first (docs/operating.md, \"Who may do what\")")
        webserver = f"http://127.0.0.1:{(webserver_port := _free_port())}"
        self.receiver = Receiver(("127.0.0.1", 0), webserver, _webhooks(access))
        self.auditor = Auditor(("127.0.0.1", 0), webserver, project, access.programs) if access.signs_in else None
        self.front = Front(host, port, webserver_port, names, self.receiver.server_address[1], access,
                           *(_free_port(), self.auditor.server_address[1], _admin_socket(project))
                           if access.signs_in else ())
        self.parts: list[Part] = []

    def _read_access(self) -> tuple[float | None, Access]:
        """When domains.yml last changed, and who may sign in by it (no one without the file)."""
        stamp = _mtime(self.project.domains_file)
        try:
            return stamp, access_of(load_config(self.project.domains_file).config if stamp is not None else None)
        except (ConfigError, AccessError, OSError) as error:
            raise ConsoleError(f"the accounts of {self.project.domains_file} cannot be read:\n{error}") from None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        self._write_front()
        bin_dir = Path(sys.executable).parent
        home = self.project.ensure_instance()
        DagsterInstance.from_config(str(home)).dispose()  # its storage made here: two webservers would race to
        environment = {**os.environ, "ATL_PROJECT_DIR": str(self.project.root), "DAGSTER_HOME": str(home),
                       "VIRTUAL_ENV": sys.prefix}  # dg's own venv: it warns otherwise
        self._spawn("the Dagster webserver and daemon (dg dev)", signal.SIGINT, "dagster.log",
                    [bin_dir / "dg", "dev", "-w", self.workspace, "-h", "127.0.0.1",
                     "-p", str(self.front.webserver_port)], cwd=self.project.root, env=environment)
        if self.front.readonly_port:
            self._spawn("the viewers' read-only Dagster webserver", signal.SIGTERM, "dagster-readonly.log",
                        [bin_dir / "dagster-webserver", "--read-only", "-w", self.workspace, "-h", "127.0.0.1",
                         "-p", str(self.front.readonly_port)], cwd=self.project.root, env=environment)
        self._spawn("the console's front (Caddy)", signal.SIGTERM, "caddy.log",
                    [bin_dir / "caddy", "run", "--config", self.root / "caddy.json"], cwd=self.root,
                    # not the pipeline's environment: Caddy needs none of it
                    env={"HOME": str(self.root), "XDG_DATA_HOME": str(self.root / "data"),
                         "XDG_CONFIG_HOME": str(self.root / "config")})
        self.receiver.serve_in_background()
        if self.auditor:
            self.auditor.serve_in_background()

    def _write_front(self) -> None:
        (self.root / "caddy.json").write_text(json.dumps(front_config(self.front), indent=2))

    @property
    def certificate_authority(self) -> Path:
        """The root certificate of the CA that signs the console's certificate (with sign-in)."""
        return self.root / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"

    def refresh(self) -> str | None:
        """Accounts added to or removed from domains.yml, taken at once: a removed one is refused from its next
        request. What changed, or why nothing did; None when the file did not change."""
        if _mtime(self.project.domains_file) == self.stamp:
            return None
        try:
            self.stamp, access = self._read_access()
        except ConsoleError as error:
            self.stamp = _mtime(self.project.domains_file)
            return f"{error}\nthe accounts stay as they were"
        if access.signs_in != self.front.access.signs_in:
            return "domains.yml turns sign-in on or off: restart the console (`make dev`) for that"
        self.receiver.accept(_webhooks(access))
        forges = f"forges: {', '.join(sorted(access.webhooks)) or 'none'}"
        if not access.signs_in:  # no accounts, and a front without an admin endpoint: only the forges may change
            changed = access.webhooks != self.front.access.webhooks
            self.front = dataclasses.replace(self.front, access=access)
            return forges if changed else None
        if self.auditor:
            self.auditor.programs = access.programs
        self.front = dataclasses.replace(self.front, access=access)
        self._write_front()
        reload = processes.run([Path(sys.executable).parent / "caddy", "reload", "--config", self.root / "caddy.json",
                                "--address", f"unix/{self.front.admin_socket}"], timeout=30, capture_output=True,
                               text=True, cwd=self.root)
        if reload.returncode != 0:
            return f"the console's front did not take the accounts: {reload.stderr.strip()[-300:]}"
        return f"accounts now: {', '.join(sorted(access.accounts)) or 'none'}; {forges}"

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
        """The UI answers through the front; with sign-in, each webserver answers and the front asks to sign in."""
        if not self.front.access.signs_in:
            return _version(f"{self.front.url}/graphql")
        try:
            front = requests.get(f"https://127.0.0.1:{self.front.port}/", verify=self.certificate_authority, timeout=5)
        except (requests.RequestException, OSError):
            return False
        return front.status_code == 401 and all(_version(f"http://127.0.0.1:{port}/graphql")
                                                  for port in (self.front.webserver_port, self.front.readonly_port))

    def exited(self) -> str | None:
        """What stopped, and where its log is, once a part has exited."""
        for part in self.parts:
            if (code := part.process.poll()) is not None:
                return f"{part.name} stopped (exit code {code}); its log: {part.log}"
        return None

    def wait(self, say: Callable[[str], None] = print) -> str:
        """Block until a part exits, taking changed accounts meanwhile; say which part."""
        while not (exited := self.exited()):
            if change := self.refresh():
                say(change)
            time.sleep(0.5)
        return exited

    def stop(self) -> None:
        """Ask each part to stop, give them STOP_GRACE seconds, then kill what is left of their groups."""
        for server in filter(None, (self.receiver, self.auditor)):
            server.shutdown()
            server.server_close()
        for part in self.parts:
            part.signal_group(part.stop_signal)
        deadline = time.monotonic() + STOP_GRACE
        for part in self.parts:
            with contextlib.suppress(processes.TimeoutExpired):
                part.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            part.signal_group(signal.SIGKILL)  # and the run workers or helpers it left behind
            part.process.wait()


def _version(url: str) -> bool:
    try:
        response = requests.post(url, json={"query": "{ version }"}, timeout=5)
        return response.ok and bool(response.json().get("data", {}).get("version"))
    except (requests.RequestException, ValueError):
        return False


def _webhooks(access: Access) -> dict[str, str]:
    """The forges' secrets: their accounts', and ATL_WEBHOOK_SECRET's when it is set."""
    variable = {SECRET_VARIABLE: os.environ[SECRET_VARIABLE]} if os.environ.get(SECRET_VARIABLE) else {}
    return {**access.webhooks, **variable}


def _admin_socket(project: Project) -> str:
    try:
        folder = files.private_folder()
    except OSError as error:
        raise ConsoleError(str(error)) from None
    return str(folder / f"console-{hashlib.sha256(str(project.root).encode()).hexdigest()[:12]}.sock")


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


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
