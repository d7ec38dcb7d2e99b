"""A push deployed at once: the git_push sensor evaluated now, through the webserver's GraphQL API.

The webhook receiver calls this when a verified notification arrives. It asks the running
webserver to evaluate the sensor with its current cursor (the UI's "Test sensor"), and launches
what the sensor requests with the sensor's own tags and run key. The sensor keeps polling as
a fallback; when it meets the same commit, Dagster finds a run of that run key already
launched for it and launches nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests
import yaml

from atl_pipeline.errors import AtlError
from atl_pipeline.orchestration.dagster_adapter import RUN_KEY_TAG, SENSOR_TAG
from atl_pipeline.orchestration.stage import DEPLOY_JOB

SENSOR = "git_push"
VIA_TAG = "atl/via"  # what told the pipeline of the push, when not the sensor's poll
LOCATION = {"repositoryLocationName": "atl", "repositoryName": "__repository__"}
TIMEOUT = 60.0  # seconds: the sensor's evaluation fetches from the remote

SENSOR_STATE = """
query SensorState($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status typeSpecificData { ... on SensorData { lastCursor } } } }
    ... on PythonError { message }
  }
}"""

DRY_RUN = """
mutation DryRun($selector: SensorSelector!, $cursor: String) {
  sensorDryRun(selectorData: $selector, cursor: $cursor) {
    __typename
    ... on DryRunInstigationTick { evaluationResult {
      skipReason error { message } runRequests { runKey runConfigYaml tags { key value } } } }
    ... on PythonError { message }
  }
}"""

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""


class PushNotLaunched(AtlError):
    """The webserver could not be asked, or refused the run."""

    transient = True


@dataclass(frozen=True)
class Outcome:
    """What a notification led to: the runs launched, or why none."""

    launched: tuple[str, ...] = ()
    reason: str = ""


def deploy_push(webserver: str, via: str) -> Outcome:
    """Evaluate the git_push sensor now on the webserver at `webserver` (a URL) and launch what it
    requests, tagged `atl/via: <via>`. The evaluation leaves out what the sensor requests under a run
    key that has a run already, as the sensor's daemon does."""
    api = _GraphQL(webserver)
    selector = {**LOCATION, "sensorName": SENSOR}
    sensor = api.call(SENSOR_STATE, selector=selector)["sensorOrError"]
    if sensor["__typename"] != "Sensor":
        raise PushNotLaunched(f"the webserver has no sensor {SENSOR}: {sensor.get('message', sensor['__typename'])}")
    state = sensor["sensorState"]
    if state["status"] != "RUNNING":
        return Outcome(reason=f"the sensor {SENSOR} is stopped: switch it on in the UI (Automation) to deploy pushes")
    tick = api.call(DRY_RUN, selector=selector, cursor=state["typeSpecificData"]["lastCursor"])["sensorDryRun"]
    if tick["__typename"] != "DryRunInstigationTick":
        raise PushNotLaunched(f"the sensor {SENSOR} could not be evaluated: {tick.get('message')}")
    result = tick["evaluationResult"]
    if result["error"]:
        raise PushNotLaunched(f"the sensor {SENSOR} failed: {result['error']['message']}")
    launched = tuple(_launch(api, request, via) for request in result["runRequests"])
    return Outcome(launched, "" if launched else result["skipReason"] or "a run of this push exists already")


def _launch(api: _GraphQL, request: dict, via: str) -> str:
    """The run the sensor requested, launched as the sensor would have."""
    key = request["runKey"]
    tags = {**{tag["key"]: tag["value"] for tag in request["tags"]}, SENSOR_TAG: SENSOR, RUN_KEY_TAG: key,
            VIA_TAG: via}
    params = {"selector": {**LOCATION, "jobName": DEPLOY_JOB},
              "runConfigData": yaml.safe_load(request["runConfigYaml"]) or {},
              "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]}}
    launched = api.call(LAUNCH, params=params)["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        raise PushNotLaunched(f"the webserver refused the run of {key}: {launched}")
    return launched["run"]["runId"]


class _GraphQL:
    def __init__(self, url: str):
        self.url = url.rstrip("/") + "/graphql"

    def call(self, query: str, **variables) -> dict:
        try:
            response = requests.post(self.url, json={"query": query, "variables": variables}, timeout=TIMEOUT)
            response.raise_for_status()
            body = response.json()
        except (requests.RequestException, ValueError) as error:
            raise PushNotLaunched(f"the Dagster webserver at {self.url} did not answer: {error}") from None
        if body.get("errors"):
            raise PushNotLaunched(f"the Dagster webserver at {self.url} refused the query: {body['errors']}")
        return body["data"]
