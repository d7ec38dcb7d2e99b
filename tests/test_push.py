"""A push deployed at once, through a real `dg dev`: the repository's post-receive hook and a
forge's signed webhook each start exactly one run, with the git_push sensor's run key and tags,
and the sensor, still polling, launches nothing twice; a forged or replayed webhook starts none.

The receiver runs in this process, as in the console. The sensor polls every POLL seconds; each
test pushes just after a poll, so that the run it finds was started by the notification."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass

import pytest
import requests

from atl_pipeline import githook
from atl_pipeline.orchestration.push import SENSOR
from atl_pipeline.orchestration.receiver import PATH, Receiver
from atl_pipeline.project import Project
from tests.conftest import copy_project, kill_stack
from tests.dagster_dev import DagsterDev
from tests.dagster_helpers import audit_record
from tests.git_helpers import Remote

pytestmark = pytest.mark.slow

SECRET = "a-secret-the-forge-and-the-pipeline-share"
POLL = 20  # seconds between the sensor's polls here


@dataclass
class Stack:
    remote: Remote
    dev: DagsterDev
    receiver: Receiver
    project: Project

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.receiver.server_address[1]}{PATH}"

    def runs_of(self, sha: str) -> list[dict]:
        return self.dev.runs({"atl/commit": sha})

    def sensor(self) -> dict:
        """The git sensor's last cursor and last tick's time."""
        query = """query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) { ... on Sensor {
            sensorState { typeSpecificData { ... on SensorData { lastCursor lastTickTimestamp } } } } } }"""
        selector = {"repositoryLocationName": "atl", "repositoryName": "__repository__", "sensorName": SENSOR}
        return self.dev.graphql(query, selector=selector)["sensorOrError"]["sensorState"]["typeSpecificData"]

    def wait_for_the_sensor(self, done, what: str) -> None:
        deadline = time.monotonic() + 3 * POLL
        while not done(self.sensor()):
            assert time.monotonic() < deadline, f"the sensor did not {what} within {3 * POLL} s"
            time.sleep(0.2)

    def just_after_a_poll(self) -> None:
        """Once the sensor has polled again: it polls next in POLL seconds."""
        last = self.sensor()["lastTickTimestamp"]
        self.wait_for_the_sensor(lambda sensor: sensor["lastTickTimestamp"] != last, "poll")

    def wait_until_the_sensor_has_seen(self, sha: str) -> None:
        self.wait_for_the_sensor(lambda sensor: sensor["lastCursor"] == sha, f"poll {sha[:12]}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("push")
    project = copy_project(root / "project")
    remote = Remote.create(root, project.root)
    dev = DagsterDev.start(project, root / "dg-dev.log", ATL_GIT_REMOTE=str(remote.origin), ATL_GIT_BRANCH="main",
                           ATL_GIT_POLL_SECONDS=str(POLL))
    receiver = Receiver(("127.0.0.1", 0), dev.url, {"forge": SECRET})
    receiver.serve_in_background()
    try:
        first = dev.wait_for_run({"atl/commit": remote.git("rev-parse", "HEAD").strip()})
        assert first["status"] == "SUCCESS"
        yield Stack(remote, dev, receiver, project)
    finally:
        receiver.shutdown()
        receiver.server_close()
        dev.stop()
        kill_stack(project)


def test_a_push_through_the_hook_starts_its_run_at_once_and_only_once(stack: Stack):
    githook.install(stack.remote.origin, stack.url, SECRET)
    stack.just_after_a_poll()
    try:
        sha = stack.remote.edit("domains.yml", "replicas: 3", "replicas: 2", "api: two replicas")
        (run,) = stack.runs_of(sha)  # git push returns after its post-receive hook: the run exists already
    finally:
        (stack.remote.origin / "hooks" / githook.HOOK).unlink()

    tags = {tag["key"]: tag["value"] for tag in run["tags"]}
    assert (tags["atl/via"], tags["atl/trigger"], tags["dagster/run_key"], tags["dagster/sensor_name"]) == (
        "git hook, account forge", "git", sha, SENSOR)
    assert tags["atl/message"] == "api: two replicas"
    stack.wait_until_the_sensor_has_seen(sha)
    assert stack.dev.wait_for_run({"atl/commit": sha})["status"] == "SUCCESS"
    assert len(stack.runs_of(sha)) == 1
    record = audit_record(stack.project, lambda record: record.get("run_id") == run["runId"])
    assert (record["who"], record["via"], record["action"], record["outcome"], record["commit"]) == (
        f"Ada Operator <ada@example.org> (commit {sha[:12]})", "git", "deploy", "success", sha)
    assert record["changes"] and record["stages"]["terraform_apply"] == "success"


def github_push(body: bytes, secret: str = SECRET, delivery: str | None = None) -> dict:
    return {"Content-Type": "application/json", "X-GitHub-Event": "push",
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def test_a_signed_webhook_starts_one_run_and_a_forged_or_replayed_one_none(stack: Stack):
    stack.just_after_a_poll()
    sha = stack.remote.edit("domains.yml", "replicas: 2", "replicas: 3", "api: three replicas")
    body = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
    headers = github_push(body)

    forged = requests.post(stack.url, data=body, headers=github_push(body, secret="guessed"), timeout=60)
    assert (forged.status_code, forged.json()) == (401, {"refused": "the signature does not match the secret"})
    assert stack.runs_of(sha) == []

    signed = requests.post(stack.url, data=body, headers=headers, timeout=60)
    assert signed.status_code == 200
    (run,) = stack.runs_of(sha)
    assert signed.json() == {"launched": [run["runId"]], "reason": ""}

    replayed = requests.post(stack.url, data=body, headers=headers, timeout=60)
    assert replayed.status_code == 401 and "replay" in replayed.json()["refused"]
    again = requests.post(stack.url, data=body, headers=github_push(body), timeout=60)  # a new delivery, same push
    assert again.json() == {"launched": [], "reason": "a run of this push exists already"}

    stack.wait_until_the_sensor_has_seen(sha)
    assert stack.dev.wait_for_run({"atl/commit": sha})["status"] == "SUCCESS"
    assert [r["runId"] for r in stack.runs_of(sha)] == [run["runId"]]
