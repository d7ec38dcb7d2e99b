"""The console, `atl utils console` (what `make dev` and `make run` start): the Dagster UI
behind a Caddy front that refuses what other sites and other names send, with a real
`dg dev`, a real Caddy and Debian's Chromium.

One console serves the module, started as an operator starts it. Its project holds only
workspace.yaml, so no sensor deploys anything while the tests count runs. Every run the
tests try to launch carries the tag `atl/from`, whose value says how it was sent. The
tests run in order; the last ones stop consoles.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from atl_pipeline.project import Project
from tests.browser import ARTIFACTS, CHROMIUM_FLAGS, chromium, skip_welcome
from tests.conftest import REPO
from tests.dagster_dev import LAUNCH, RUNS, START_TIMEOUT, GraphQL
from tests.postgres import free_port
from tests.test_security import listening_sockets

pytestmark = pytest.mark.slow  # `atl utils console`: dagster dev and Caddy, Chromium

ATL = Path(sys.executable).with_name("atl")
ATTACKER = "http://attacker.example"
TUNNEL = "localhost:8080"  # `ssh -L 8080:127.0.0.1:PORT`, say: the module's console is told this name
ANOTHER_SITE = Path(__file__).with_name("another_site.html")
REFUSED = {403, 405, 415}  # the front's answers to what it refuses
WEBHOOK_SECRET = "the-forges-secret"


@dataclass
class RunningConsole:
    """`atl utils console --port PORT` for one project, and what it printed."""

    project: Project
    process: subprocess.Popen
    output: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def front(self) -> GraphQL:
        return GraphQL(self.url, self.project.state_dir / "console" / "dagster.log")

    def parts(self) -> dict[str, set[int]]:
        """The pids of Caddy, and of `dg dev` and everything it started."""
        below = descendants(self.process.pid)
        caddy = {pid for pid in below if process_name(pid) == "caddy"}
        return {"caddy": caddy, "dagster": below - caddy}

    def webserver_port(self) -> int:
        (_, _, port), = listening_sockets(self.parts()["dagster"])
        return port

    def printed(self) -> str:
        return self.output.read_text()

    def interrupt(self) -> int:
        """Ctrl-C, as in the terminal that runs it; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=60)


def start_console(project: Project, output: Path, *options: str) -> RunningConsole:
    port = free_port()
    with output.open("w") as stream:
        process = subprocess.Popen([ATL, "utils", "console", "--port", str(port), *options], stdout=stream,
                                   stderr=subprocess.STDOUT, env={**os.environ, "ATL_PROJECT_DIR": str(project.root),
                                                                  "ATL_WEBHOOK_SECRET": WEBHOOK_SECRET})
    console = RunningConsole(project, process, output, port)
    deadline = time.monotonic() + START_TIMEOUT
    while f"Dagster UI: {console.url} " not in console.printed():
        if process.poll() is not None or time.monotonic() > deadline:
            console.interrupt()
            raise RuntimeError(f"the console did not start:\n{console.printed()}")
        time.sleep(0.2)
    return console


def project_with_a_workspace(root: Path) -> Project:
    root.mkdir(parents=True)
    shutil.copy(REPO / "workspace.yaml", root / "workspace.yaml")
    return Project(root)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("console")
    running = start_console(project_with_a_workspace(root / "project"), root / "console.out", "--name", TUNNEL)
    yield running
    running.interrupt()


def launch(sent_as: str) -> dict:
    """The body of a launchRun of the drift job tagged with how it was sent."""
    return {"query": LAUNCH, "variables": {"job": "drift", "tags": [{"key": "atl/from", "value": sent_as}]}}


def launched(console: RunningConsole) -> list[str]:
    """How each run of the instance was sent (its tag `atl/from`), read behind the front."""
    webserver = GraphQL(f"http://127.0.0.1:{console.webserver_port()}", console.front.log)
    runs = webserver.graphql(RUNS, filter={})["runsOrError"]["results"]
    return [tag["value"] for run in runs for tag in run["tags"] if tag["key"] == "atl/from"]


def post(console: RunningConsole, body: dict, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(f"{console.url}/graphql", json=body, headers=headers, timeout=30)


def test_the_console_serves_its_own_origin(console: RunningConsole):
    own = {"Origin": console.url, "Sec-Fetch-Site": "same-origin"}

    version = post(console, {"query": "{ version }"}, own)
    launch_run = post(console, launch("own origin"), own)

    assert version.status_code == 200 and version.json()["data"]["version"]
    assert launch_run.json()["data"]["launchRun"]["__typename"] == "LaunchRunSuccess"
    assert "own origin" in launched(console)
    assert (console.project.state_dir / "console").stat().st_mode & 0o777 == 0o700


def test_the_webserver_listens_on_a_private_loopback_port_and_caddy_on_the_console_only(console: RunningConsole):
    """No admin endpoint for this Caddy: the stack's Caddy has Caddy's default one."""
    parts = console.parts()
    webserver = console.webserver_port()

    assert listening_sockets(parts["caddy"]) == [("caddy", "127.0.0.1", console.port)]
    assert [(address, port) for _, address, port in listening_sockets(parts["dagster"])] == [("127.0.0.1", webserver)]
    assert webserver != console.port


def test_a_get_with_a_mutation_is_refused_and_launches_nothing(console: RunningConsole):
    def get(url: str, sent_as: str, **headers: str) -> requests.Response:
        body = launch(sent_as)
        return requests.get(f"{url}/graphql", params={"query": body["query"], "variables": json.dumps(
            body["variables"])}, headers=headers, timeout=30)

    refused = get(console.url, "GET")
    upgrade_without_origin = get(console.url, "GET with Upgrade", Upgrade="websocket")
    straight_to_the_webserver = get(f"http://127.0.0.1:{console.webserver_port()}", "GET behind the front")

    assert (refused.status_code, upgrade_without_origin.status_code) == (405, 405)
    assert straight_to_the_webserver.json()["data"]["launchRun"]["__typename"] == "LaunchRunSuccess"  # the threat
    sent_as = launched(console)
    assert "GET behind the front" in sent_as and "GET" not in sent_as and "GET with Upgrade" not in sent_as


@pytest.mark.parametrize("headers", [
    {"Origin": ATTACKER}, {"Origin": "null"}, {"Origin": "http://127.0.0.1:9090"},
    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
    {"Origin": ATTACKER, "Sec-Fetch-Site": "cross-site"},
], ids=["another origin", "an opaque origin", "another port", "cross-site", "same-site", "both"])
def test_another_site_can_neither_read_nor_launch(console: RunningConsole, headers: dict[str, str]):
    read = post(console, {"query": RUNS, "variables": {"filter": {}}}, headers)
    launch_run = post(console, launch(f"another site: {headers}"), headers)

    assert (read.status_code, launch_run.status_code) == (403, 403)
    assert "runId" not in read.text
    assert f"another site: {headers}" not in launched(console)


def test_a_name_other_than_the_consoles_is_refused(console: RunningConsole):
    """A page whose DNS name was rebound to 127.0.0.1 sends its own name as Host."""
    rebound = {"Host": f"attacker.example:{console.port}"}

    page = requests.get(f"{console.url}/runs", headers=rebound, timeout=30)
    read = post(console, {"query": RUNS, "variables": {"filter": {}}}, rebound)

    assert (page.status_code, read.status_code) == (403, 403)
    assert f"answers at {console.url} only" in page.text
    assert requests.get(f"http://localhost:{console.port}/runs", timeout=30).ok


def test_a_name_given_to_the_console_is_one_of_its_own(console: RunningConsole):
    page = requests.get(f"{console.url}/runs", headers={"Host": TUNNEL}, timeout=30)
    query = post(console, {"query": "{ version }"}, {"Host": TUNNEL, "Origin": f"http://{TUNNEL}"})
    assert (page.status_code, query.status_code) == (200, 200)


@pytest.mark.parametrize("content_type", [
    "text/plain", "text/plain;application/json", "application/x-www-form-urlencoded", "multipart/form-data", None])
def test_a_post_that_is_not_json_is_refused(console: RunningConsole, content_type: str | None):
    """What a form or a `fetch` without CORS can send. Dagster would run the query in the URL,
    or read the body as JSON when "application/json" is anywhere in the type."""
    body = launch(f"POST of {content_type}")
    response = requests.post(
        f"{console.url}/graphql", params={"query": body["query"], "variables": json.dumps(body["variables"])},
        data=json.dumps(body), headers={"Content-Type": content_type} if content_type else {}, timeout=30)

    assert response.status_code == 415
    assert f"POST of {content_type}" not in launched(console)


def test_other_posts_must_be_json_too(console: RunningConsole):
    """Dagster's REST endpoints record events from a POST without a body."""
    response = requests.post(f"{console.url}/report_asset_materialization/domain_config", timeout=30)
    assert response.status_code == 415


ASSET = """query Asset($key: AssetKeyInput!) { assetOrError(assetKey: $key) { __typename
  ... on Asset { assetMaterializations(limit: 1) { runId } assetObservations(limit: 1) { runId } } } }"""


def webserver_writes() -> list[tuple[str, str]]:
    """(method, path) of every route of the installed Dagster webserver that takes more than GET and HEAD,
    its path parameters filled in: what a later Dagster adds comes along by itself."""
    from dagster import DagsterInstance
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import EmptyWorkspaceTarget
    from dagster_webserver.webserver import DagsterWebserver

    with tempfile.TemporaryDirectory() as home, DagsterInstance.from_config(home) as instance, \
            WorkspaceProcessContext(instance, EmptyWorkspaceTarget()) as workspace:
        routes = DagsterWebserver(workspace).build_routes()
    return [(method, re.sub(r"\{(\w+)(:\w+)?\}", lambda m: f"atl-probe-{m[1]}", route.path))
            for route in routes for method in sorted(getattr(route, "methods", None) or ()) if
            method not in ("GET", "HEAD")]


def test_every_write_but_graphql_is_refused_before_the_webserver(console: RunningConsole):
    """Dagster's REST endpoints record made-up materializations, checks and observations; the front lets
    through no method but GET and HEAD, except GraphQL's POST (tests/test_access.py: the auditor's way)."""
    writes = webserver_writes()
    assert ("POST", "/report_asset_materialization/atl-probe-asset_key") in writes  # the list is the real one
    own = {"Origin": console.url, "Content-Type": "application/json"}
    for method, path in writes:
        if (method, path) == ("POST", "/graphql"):
            continue
        response = requests.request(method, f"{console.url}{path}", data=b"{}", headers=own, timeout=30)
        assert response.status_code == 405 and "only as GraphQL mutations" in response.text, (method, path)
    webserver = GraphQL(f"http://127.0.0.1:{console.webserver_port()}", console.front.log)
    probe = webserver.graphql(ASSET, key={"path": ["atl-probe-asset_key"]})["assetOrError"]
    assert probe["__typename"] == "AssetNotFoundError" or not (
        probe["assetMaterializations"] or probe["assetObservations"])  # nothing was reported
    for method in ("PUT", "DELETE", "PATCH"):  # methods no route of today's takes
        assert requests.request(method, f"{console.url}/runs", headers=own, timeout=30).status_code == 405


def github(event: str, body: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "Host": "infra-console.example.org", "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": signature}


def test_a_push_notification_reaches_the_receiver_under_any_name_and_only_signed(console: RunningConsole):
    """A forge calls the console by its public name: the front passes /hooks/git to the receiver, which
    answers what is unsigned with 401 and asks the webserver's git sensor about what is signed."""
    url, body = f"{console.url}/hooks/git", b'{"ref": "refs/heads/main"}'
    assert f"push notifications: {url}" in console.printed()

    forged = requests.post(url, data=body, headers=github("push", body, secret="guessed"), timeout=30)
    ping = requests.post(url, data=body, headers=github("ping", body), timeout=30)
    push = requests.post(url, data=body, headers=github("push", body), timeout=60)

    assert (forged.status_code, forged.json()) == (401, {"refused": "the signature does not match the secret"})
    assert (ping.status_code, ping.json()) == (200, {"ignored": "not a push event (from GitHub)"})
    assert (push.status_code, push.json()["launched"]) == (200, [])  # no git remote here: the sensor is off
    assert push.json()["reason"].startswith("the sensor git_push is stopped")
    get = requests.get(url, headers={"Host": "infra-console.example.org"}, timeout=30)
    assert get.status_code in REFUSED  # only a POST goes to the receiver


def test_the_websocket_opens_for_the_consoles_own_pages_only(console: RunningConsole):
    assert websocket_handshake(console, Origin=console.url) == 101
    assert websocket_handshake(console, Origin=ATTACKER) == 403
    assert websocket_handshake(console, Origin=console.url, Host=f"attacker.example:{console.port}") == 403


def websocket_handshake(console: RunningConsole, **headers: str) -> int:
    """The status of the UI's WebSocket handshake on /graphql, with these headers."""
    connection = http.client.HTTPConnection("127.0.0.1", console.port, timeout=30)
    try:
        connection.request("GET", "/graphql", headers={
            "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol": "graphql-ws", **headers})
        return connection.getresponse().status
    finally:
        connection.close()


def test_in_a_browser_another_site_gets_nothing_and_the_console_works(console: RunningConsole):
    from playwright.sync_api import expect, sync_playwright

    before = launched(console)
    run_ids = [run["runId"] for run in console.front.graphql(RUNS, filter={})["runsOrError"]["results"]]
    ARTIFACTS.mkdir(exist_ok=True)
    with serving(ANOTHER_SITE) as site, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=[
            *CHROMIUM_FLAGS, "--host-resolver-rules=MAP attacker.example 127.0.0.1",
            # Chromium's own guard against pages of the internet reaching loopback: off, as in other
            # browsers, so that the front is what refuses the rebound name
            "--disable-features=LocalNetworkAccessChecks"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        seen = {origin: attack(page, f"{origin}/?target={console.url}", f"console-{name}") for origin, name in (
            (f"http://localhost:{site}", "another-site"), (f"http://127.0.0.1:{site}", "another-port"))}
        rebound = f"http://attacker.example:{console.port}"  # served by the attacker, then resolved to 127.0.0.1
        page.route(re.compile(re.escape(f"{rebound}/?target=") + "$"), lambda route: route.fulfill(path=ANOTHER_SITE))
        seen[rebound] = attack(page, f"{rebound}/?target=", "console-rebound-name")

        refused, frames = [], []
        page.on("response", lambda response: response.status in REFUSED and refused.append(response.url))
        page.on("websocket", lambda socket: socket.on("framereceived", lambda frame: frames.append(frame)))
        page.goto(f"{console.url}/locations/atl/jobs/drift/playground")
        skip_welcome(page)
        page.get_by_role("button", name="Launch Run").click()
        page.wait_for_url(re.compile(r".*/runs/[0-9a-f-]{36}$"), timeout=30_000)
        run_id = page.url.rsplit("/", 1)[1]
        page.goto(f"{console.url}/runs")
        expect(page.get_by_role("link", name=run_id[:8]).first).to_be_visible(timeout=30_000)
        page.screenshot(path=ARTIFACTS / "console-runs.png")
        browser.close()

    assert launched(console) == before  # the UI's launch has no tag atl/from
    for origin, text in seen.items():
        read = [word for word in (*run_ids, "LaunchRunSuccess", "dagster_version", "connection_ack") if word in text]
        assert read == [], (origin, text)
    assert f"403 basic This console answers at {console.url} only" in seen[rebound]
    assert run_id not in run_ids and refused == [] and frames  # the UI's own WebSocket got its answers


def attack(page, url: str, screenshot: str) -> str:
    """Open another site's page, wait until each of its attempts has ended; what it shows."""
    page.goto(url)
    page.wait_for_selector("body[data-done=yes]", timeout=30_000)
    page.screenshot(path=ARTIFACTS / f"{screenshot}.png")
    return page.locator("#attempts").inner_text()


@contextlib.contextmanager
def serving(file: Path):
    """The file at / of a web server on a loopback port of its own; yields the port."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = file.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_when_the_webserver_dies_the_console_stops_and_says_where_its_log_is(console: RunningConsole):
    parts = console.parts()
    webserver = next(pid for pid in parts["dagster"] if listening_sockets({pid}))
    os.kill(webserver, signal.SIGKILL)

    assert console.process.wait(timeout=120) == 1
    log = console.project.state_dir / "console" / "dagster.log"
    assert re.search(rf"^the Dagster webserver and daemon \(dg dev\) stopped \(exit code -?\d+\); "
                     rf"its log: {re.escape(str(log))}$", console.printed(), re.M)
    assert not [pid for pids in parts.values() for pid in pids if running(pid)]


def test_ctrl_c_stops_the_webserver_the_daemon_and_the_front(tmp_path: Path):
    console = start_console(project_with_a_workspace(tmp_path / "project"), tmp_path / "console.out")
    parts = console.parts()

    assert console.interrupt() == 0
    assert not [pid for pids in parts.values() for pid in pids if running(pid)]
    with pytest.raises(requests.ConnectionError):
        requests.get(console.url, timeout=30)


def test_a_port_in_use_is_named_before_anything_starts(tmp_path: Path):
    project = project_with_a_workspace(tmp_path / "project")
    with socket.create_server(("127.0.0.1", 0)) as another_program:
        port = another_program.getsockname()[1]
        result = subprocess.run([ATL, "utils", "console", "--port", str(port)], capture_output=True, text=True,
                                env={**os.environ, "ATL_PROJECT_DIR": str(project.root)}, timeout=60)
    assert (result.returncode, result.stderr) == (2, f"atl: 127.0.0.1:{port} is in use (another console?): stop "
                                                     "that program, or choose another port (--port, or PORT= for "
                                                     "make dev)\n")
    assert not (project.state_dir / "console").exists()


def descendants(pid: int) -> set[int]:
    """Every process started by `pid`, and by those, and so on."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found, generation = set(), {pid}
    while generation:
        generation = {child for child, parent in parents.items() if parent in generation} - found
        found |= generation
    return found


def process_name(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip()
    return ""


def running(pid: int) -> bool:
    """Alive and not a zombie waiting for its parent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
