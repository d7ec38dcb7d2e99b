"""Who may do what in the console: sign-in over HTTPS, viewers and operators, programs' tokens,
forges' secrets, and the audit trail of what operators change, against a real `atl utils console`
(dg dev, the read-only webserver, Caddy with its internal CA).

The project holds workspace.yaml and a domains.yml with accounts but no templates: the file
sensor's deploy of it fails at the plan, which leaves the webservers to the tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest

from atl_pipeline.operations import audit
from atl_pipeline.project import Project
from atl_pipeline.runtime.http import connection
from tests.dagster_dev import START_TIMEOUT, TERMINAL
from tests.dagster_helpers import audit_record
from tests.postgres import free_port
from tests.test_console import descendants, project_with_a_workspace
from tests.test_security import listening_sockets

ATL = Path(sys.executable).with_name("atl")
HOSTNAME = "ops.example.org"
PASSWORDS = {"alice": "alice's long password", "bob": "bob's long password"}
TOKEN, FORGE_SECRET = "the robot's token", "the forge's secret"
LOCATION = {"repositoryLocationName": "atl", "repositoryName": "__repository__"}

# as the UI sends them: the parameters in variables
LAUNCH = """mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename ... on LaunchRunSuccess { run { runId tags { key value } } }
    ... on UnauthorizedError { message } ... on PythonError { message } } }"""
START_SENSOR = """mutation StartSensor($sensorSelector: SensorSelector!) {
  startSensor(sensorSelector: $sensorSelector) { __typename ... on Sensor { sensorState { status } } } }"""
RUN = """query Run($runId: ID!) { runOrError(runId: $runId) { ... on Run { status tags { key value } } } }"""
REEXECUTE = """mutation LaunchPipelineReexecution($reexecutionParams: ReexecutionParams) {
  launchPipelineReexecution(reexecutionParams: $reexecutionParams) {
    __typename ... on LaunchRunSuccess { run { runId tags { key value } } } ... on UnauthorizedError { message } } }"""
STOP_SENSOR = """mutation StopSensor($id: String!) {
  stopSensor(id: $id) { __typename ... on StopSensorMutationResult { instigationState { status } } } }"""
# the UI's own launch, as dagster-webserver's bundle sends it
UI_LAUNCH = """mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
    launchPipelineExecution(executionParams: $executionParams) {
      ... on LaunchRunSuccess { run { id pipelineName } }
      ... on PipelineNotFoundError { message } ... on InvalidSubsetError { message }
      ... on RunConfigValidationInvalid { errors { message } } } }"""
RUNS_TAGGED = """query Runs($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}) {
  ... on Runs { results { runId } } } }"""
MATERIALIZATIONS = """query Materializations($key: AssetKeyInput!) { assetOrError(assetKey: $key) { __typename
  ... on Asset { assetMaterializations(limit: 5) { runId } } } }"""
SENSOR_ID = """query SensorId($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
  ... on Sensor { sensorState { id status } } } }"""


def accounts_file(bot: bool = True, forge: bool = True) -> str:
    hashes = {name: bcrypt.hashpw(secret.encode(), bcrypt.gensalt(4)).decode() for name, secret in PASSWORDS.items()}
    return "\n".join([
        "services: {web: {command: [app, '{port}'], port: 12000}}",
        "domains: [{name: www.example.org, service: web, replicas: 2}]",
        f"console: {{hostname: {HOSTNAME}}}",
        "operators:",
        f"  alice: {{role: operator, password_hash: '{hashes['alice']}'}}",
        f"  bob: {{role: viewer, password_hash: '{hashes['bob']}'}}",
        "service_accounts:" if bot or forge else "service_accounts: {}",
        *(["  robot: {role: operator, token: env:ROBOT_TOKEN}"] if bot else []),
        *(["  forge: {webhook_secret: env:FORGE_SECRET}"] if forge else []),
    ]) + "\n"


@dataclass
class SignedInConsole:
    project: Project
    process: subprocess.Popen
    output: Path
    port: int

    @property
    def authority(self) -> Path:
        return self.project.state_dir / "console" / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"

    def call(self, method: str, path: str, body: dict | bytes | None = None, user: str | None = None,
             headers: dict[str, str] | None = None, secret: str | None = None) -> tuple[int, bytes]:
        """A request to the console by its name, over TLS verified against its CA."""
        client = connection(("127.0.0.1", self.port), HOSTNAME, tls=True, ca=self.authority, timeout=60)
        sent = {"Content-Type": "application/json", **(headers or {})}
        if user:
            credentials = f"{user}:{secret or PASSWORDS.get(user, TOKEN)}".encode()
            sent["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        client.request(method, path, body=data, headers=sent)
        response = client.getresponse()
        return response.status, response.read()

    def graphql(self, user: str, query: str, **variables) -> dict:
        status, body = self.call("POST", "/graphql", {"query": query, "variables": variables}, user)
        assert status == 200, body
        return json.loads(body)["data"]

    def printed(self) -> str:
        return self.output.read_text()


def launch_params(job: str, tags: dict[str, str] | None = None) -> dict:
    return {"selector": {**LOCATION, "jobName": job}, "mode": "default",
            "executionMetadata": {"tags": [{"key": key, "value": value} for key, value in (tags or {}).items()]}}


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("access")
    project = project_with_a_workspace(root / "project")
    project.domains_file.write_text(accounts_file())
    port, output = free_port(), root / "console.out"
    with output.open("w") as stream:
        process = subprocess.Popen([ATL, "utils", "console", "--port", str(port)], stdout=stream,
                                   stderr=subprocess.STDOUT,
                                   env={**os.environ, "ATL_PROJECT_DIR": str(project.root), "ROBOT_TOKEN": TOKEN,
                                        "FORGE_SECRET": FORGE_SECRET, "ATL_DRIFT_SCHEDULE": "* * * * *"})
    running = SignedInConsole(project, process, output, port)
    deadline = time.monotonic() + START_TIMEOUT
    while f"Dagster UI: https://{HOSTNAME}:{port} " not in running.printed():
        assert process.poll() is None and time.monotonic() < deadline, running.printed()
        time.sleep(0.2)
    yield running
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)


pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("access")]


def test_without_credentials_or_with_wrong_ones_nothing_is_served(console: SignedInConsole):
    assert console.call("GET", "/")[0] == 401
    assert console.call("POST", "/graphql", {"query": "{ version }"})[0] == 401
    assert console.call("POST", "/graphql", {"query": "{ version }"}, "bob", secret="not bob's")[0] == 401
    assert console.call("POST", "/graphql", {"query": "{ version }"}, "mallory", secret="anything")[0] == 401
    assert console.call("GET", "/", user="bob")[0] == 200


def test_a_viewer_sees_everything_and_changes_nothing(console: SignedInConsole):
    assert console.graphql("bob", "{ version }")["version"]
    launched = console.graphql("bob", LAUNCH, executionParams=launch_params("drift"))["launchPipelineExecution"]
    assert launched["__typename"] == "UnauthorizedError"
    started = console.graphql("bob", START_SENSOR, sensorSelector={**LOCATION, "sensorName": "autoscaler"})
    assert started["startSensor"]["__typename"] == "UnauthorizedError"
    assert not [r for _, r in audit.records(console.project) if r["who"] == "bob"]  # nothing changed


def test_an_operator_launches_as_herself_and_the_trail_says_so(console: SignedInConsole):
    params = launch_params("drift", {"atl/user": "someone else"})  # a forged name is replaced
    launched = console.graphql("alice", LAUNCH, executionParams=params)["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    assert {"key": "atl/user", "value": "alice"} in launched["run"]["tags"]
    assert "someone else" not in json.dumps(launched["run"]["tags"])
    (asked,) = [r for _, r in audit.records(console.project) if r.get("run_id") == run_id and r["via"] == "console"]
    assert (asked["who"], asked["action"], asked["outcome"]) == ("alice", "launchPipelineExecution", "done")
    deadline = time.monotonic() + 120
    while not (ended := [r for _, r in audit.records(console.project) if r.get("run_id") == run_id
                         and r["action"] == "drift"]):
        assert time.monotonic() < deadline, "the audit sensor wrote no record of the run's end"
        time.sleep(1)
    (ended,) = ended
    status = console.graphql("alice", RUN, runId=run_id)["runOrError"]["status"]
    assert status in TERMINAL and ended["outcome"] == status.lower() and ended["who"] == "alice"
    again = {"parentRunId": run_id, "strategy": "ALL_STEPS"}
    refused = console.graphql("bob", REEXECUTE, reexecutionParams=again)["launchPipelineReexecution"]
    assert refused["__typename"] == "UnauthorizedError"
    reexecuted = console.graphql("alice", REEXECUTE, reexecutionParams=again)["launchPipelineReexecution"]
    assert {"key": "atl/user", "value": "alice"} in reexecuted["run"]["tags"]
    child = audit_record(console.project, lambda r: r.get("run_id") == reexecuted["run"]["runId"]
                         and r["action"] == "drift")
    assert (child["who"], child["via"]) == ("alice", f"re-execution of {run_id}")  # by the launch's record

    selector = {**LOCATION, "sensorName": "autoscaler"}
    sensor_id = console.graphql("alice", SENSOR_ID, selector=selector)["sensorOrError"]["sensorState"]["id"]
    assert console.graphql("bob", STOP_SENSOR, id=sensor_id)["stopSensor"]["__typename"] == "UnauthorizedError"
    stopped = console.graphql("alice", STOP_SENSOR, id=sensor_id)["stopSensor"]
    assert stopped["instigationState"]["status"] == "STOPPED"
    started = console.graphql("alice", START_SENSOR, sensorSelector=selector)
    assert started["startSensor"]["sensorState"]["status"] == "RUNNING"
    switched = [(r["who"], r["action"]) for _, r in audit.records(console.project) if "Sensor" in r["action"]]
    assert switched == [("alice", "stopSensor"), ("alice", "startSensor")]
    assert not audit.verify(console.project)


def test_a_program_signs_in_with_its_token_and_is_recorded_as_itself(console: SignedInConsole):
    launched = console.graphql("robot", LAUNCH, executionParams=launch_params("drift"))["launchPipelineExecution"]
    assert {"key": "atl/user", "value": "robot"} in launched["run"]["tags"]
    (asked,) = [r for _, r in audit.records(console.project) if r.get("run_id") == launched["run"]["runId"]]
    assert (asked["who"], asked["via"]) == ("robot", "api")


def test_the_uis_own_launch_is_recorded_with_its_run(console: SignedInConsole):
    """The UI asks for the launched run's `id` (its mutation, as the webapp's bundle holds it), not `runId`."""
    answer = console.graphql("alice", UI_LAUNCH, executionParams=launch_params("drift"))["launchPipelineExecution"]
    run_id = answer["run"]["id"]
    (asked,) = [r for _, r in audit.records(console.project) if r.get("run_id") == run_id and r["via"] == "console"]
    assert (asked["who"], asked["action"]) == ("alice", "launchPipelineExecution")


def test_a_launch_with_its_parameters_inline_is_refused(console: SignedInConsole):
    """Inline, they would escape the auditor's `atl/user` tag; through a fragment too."""
    inline = ('mutation { launchPipelineExecution(executionParams: {selector: {repositoryLocationName: "atl", '
              'repositoryName: "__repository__", jobName: "drift"}, executionMetadata: {tags: '
              '[{key: "atl/from", value: "inline"}]}}) { __typename } }')
    in_a_fragment = inline.replace("mutation { launch", "mutation { ... on Mutation { launch") + " }"
    for document in (inline, in_a_fragment):
        status, body = console.call("POST", "/graphql", {"query": document}, "alice")
        assert status == 400 and b"pass launchPipelineExecution's parameters as variables" in body
    runs = console.graphql("alice", RUNS_TAGGED, tags=[{"key": "atl/from", "value": "inline"}])
    assert runs["runsOrError"]["results"] == []


def test_no_other_write_reaches_dagster_for_operators_or_viewers(console: SignedInConsole):
    """Dagster's REST reports would put made-up metadata on `health_check` past the auditor: refused for
    everyone (the list of the webserver's write routes against the front: tests/test_console.py)."""
    report = {"metadata": {"status": "made up"}, "description": "made up"}
    for user in ("alice", "bob"):
        for endpoint in ("report_asset_materialization", "report_asset_check", "report_asset_observation"):
            status, body = console.call("POST", f"/{endpoint}/health_check", report, user)
            assert status == 405 and b"only as GraphQL mutations" in body, (user, endpoint)
    answer = console.graphql("bob", MATERIALIZATIONS, key={"path": ["health_check"]})["assetOrError"]
    assert answer["__typename"] == "AssetNotFoundError" or answer["assetMaterializations"] == []
    assert not [r for _, r in audit.records(console.project) if "report" in r["action"]]


def test_a_mutation_sent_on_the_websocket_runs_nothing(console: SignedInConsole):
    """Dagster runs every document of its WebSocket as a subscription: a launch there is an error."""
    import ssl

    from websockets.sync.client import connect

    tls = ssl.create_default_context(cafile=str(console.authority))
    credentials = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
    sock = socket.create_connection(("127.0.0.1", console.port), timeout=30)
    launch = {"query": LAUNCH, "variables": {"executionParams": launch_params("drift", {"atl/from": "websocket"})}}
    with connect(f"wss://{HOSTNAME}:{console.port}/graphql", sock=sock, ssl=tls, server_hostname=HOSTNAME,
                 origin=f"https://{HOSTNAME}:{console.port}", subprotocols=["graphql-ws"],
                 additional_headers={"Authorization": f"Basic {credentials}"}, open_timeout=30) as websocket:
        websocket.send(json.dumps({"type": "connection_init", "payload": {}}))
        websocket.send(json.dumps({"type": "start", "id": "1", "payload": launch}))
        answers = [json.loads(websocket.recv(timeout=30)) for _ in range(2)]
    assert [answer["type"] for answer in answers if answer["type"] != "ka"][-1] in ("error", "data")
    assert "launchPipelineExecution" in json.dumps(answers)  # named in the error: no such subscription
    runs = console.graphql("alice", RUNS_TAGGED, tags=[{"key": "atl/from", "value": "websocket"}])
    assert runs["runsOrError"]["results"] == []


def test_signed_in_the_console_still_refuses_other_sites_and_names(console: SignedInConsole):
    query = {"query": "{ version }"}
    assert console.call("POST", "/graphql", query, "alice", {"Origin": "https://attacker.example"})[0] == 403
    assert console.call("POST", "/graphql", query, "alice", {"Sec-Fetch-Site": "cross-site"})[0] == 403
    assert console.call("POST", "/graphql", query, "alice", {"Host": f"attacker.example:{console.port}"})[0] == 403
    assert console.call("POST", "/graphql", query, "alice", {"Content-Type": "text/plain"})[0] == 415
    assert console.call("GET", "/graphql?query=mutation%7BlogTelemetry%7D", user="alice")[0] == 405


def test_the_webservers_listen_on_loopback_only(console: SignedInConsole):
    sockets = listening_sockets(descendants(console.process.pid) | {console.process.pid})
    assert len({port for _, _, port in sockets}) >= 3  # the front, dg dev's webserver, the read-only one
    assert {address for _, address, port in sockets if port != console.port} == {"127.0.0.1"}


def test_a_forge_signs_with_its_accounts_secret_and_a_removed_account_is_refused_at_once(console: SignedInConsole):
    def ping(delivery: str) -> int:
        body = b'{"zen": "a ping"}'
        signature = "sha256=" + sign_github(FORGE_SECRET, body)
        return console.call("POST", "/hooks/git", body, headers={
            "X-Hub-Signature-256": signature, "X-GitHub-Event": "ping", "X-GitHub-Delivery": delivery})[0]

    def robot_status() -> int | None:
        try:
            return console.call("POST", "/graphql", {"query": "{ version }"}, "robot")[0]
        except (ConnectionError, http.client.HTTPException):  # a connection the reload closed
            return None

    assert ping("delivery-1") == 200
    assert console.call("POST", "/graphql", {"query": "{ version }"}, "robot")[0] == 200
    console.project.domains_file.write_text(accounts_file(bot=False, forge=False))
    deadline = time.monotonic() + 30
    while robot_status() != 401:
        assert time.monotonic() < deadline, console.printed()
        time.sleep(0.5)
    assert ping("delivery-2") == 401
    assert console.call("POST", "/graphql", {"query": "{ version }"}, "alice")[0] == 200
    assert "accounts now: alice, bob; forges: none" in console.printed()


def sign_github(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_a_scheduled_run_leaves_its_record_naming_the_schedule(console: SignedInConsole):
    record = audit_record(console.project, lambda record: record["via"] == "schedule", timeout=150)
    assert (record["who"], record["action"]) == ("schedule drift_check", "drift")
    run = console.graphql("bob", RUN, runId=record["run_id"])["runOrError"]
    assert {"key": "atl/trigger", "value": "schedule"} in run["tags"]
    assert not audit.verify(console.project)
