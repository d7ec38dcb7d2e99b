"""A real `dg dev` (webserver and daemon) on loopback for one project, driven through
its GraphQL API. Used by the end-to-end tests, the console's tests and bench/gitops.py."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from atl_pipeline.project import Project
from tests.ports import free_port

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 120.0
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    ... on Runs { results { runId status parentRunId creationTime startTime endTime
                            tags { key value } stepStats { stepKey status } } }
    ... on PythonError { message }
  }
}"""

REEXECUTE = """
mutation Reexecute($parentRunId: String!) {
  launchRunReexecution(reexecutionParams: {parentRunId: $parentRunId, strategy: FROM_FAILURE}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""


MESSAGES = """
query Messages($runId: ID!) {
  logsForRun(runId: $runId) { ... on EventConnection { events { ... on MessageEvent { message } } } }
}"""

LAUNCH = """
mutation Launch($job: String!, $tags: [ExecutionTag!], $assets: [AssetKeyInput!]) {
  launchRun(executionParams: {
      selector: {repositoryLocationName: "atl", repositoryName: "__repository__", jobName: $job,
                 assetSelection: $assets},
      executionMetadata: {tags: $tags}}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""

MATERIALIZED = """
query Materialized($runId: ID!) {
  logsForRun(runId: $runId) { ... on EventConnection { events { __typename
    ... on MaterializationEvent { stepKey metadataEntries { label
      ... on MarkdownMetadataEntry { mdStr } ... on TextMetadataEntry { text }
      ... on IntMetadataEntry { intValue } } } } }
  }
}"""

FAILURES = """
query Failures($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection { events { __typename
      ... on ExecutionStepFailureEvent { stepKey error { message } failureMetadata { description } } } }
  }
}"""


class GraphQL:
    """The GraphQL API of a Dagster webserver at `url`, whose log is `log`."""

    def __init__(self, url: str, log: Path):
        self.url, self.log = url, log

    def graphql(self, query: str, **variables) -> dict:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=30)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def runs(self, tags: dict[str, str]) -> list[dict]:
        """Runs (newest first) carrying all these tags."""
        wanted = [{"key": key, "value": value} for key, value in tags.items()]
        return self.graphql(RUNS, filter={"tags": wanted})["runsOrError"]["results"]

    def run(self, run_id: str) -> dict:
        (run,) = self.graphql(RUNS, filter={"runIds": [run_id]})["runsOrError"]["results"]
        return run

    def wait_for_run(self, tags: dict[str, str], timeout: float = 180) -> dict:
        """The newest run with these tags, once it has finished."""
        deadline = time.monotonic() + timeout
        while not ((runs := self.runs(tags)) and runs[0]["status"] in TERMINAL):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no finished run tagged {tags} after {timeout:.0f} s: {runs}; "
                                   f"see {self.log}")
            time.sleep(0.5)
        return runs[0]

    def messages(self, run_id: str) -> list[str]:
        """Every message of the run's event log."""
        events = self.graphql(MESSAGES, runId=run_id)["logsForRun"]["events"]
        return [event["message"] for event in events if event.get("message")]

    def metadata(self, run_id: str, stage: str) -> dict[str, str | int]:
        """The metadata of the stage's materialization in the run (Markdown, text and whole numbers)."""
        events = self.graphql(MATERIALIZED, runId=run_id)["logsForRun"]["events"]
        (entries,) = [e["metadataEntries"] for e in events
                      if e["__typename"] == "MaterializationEvent" and e["stepKey"] == stage]
        return {e["label"]: e.get("mdStr", e.get("text", e.get("intValue"))) for e in entries}

    def failures(self, run_id: str) -> list[str]:
        """`stage: message` of each failed stage of the run."""
        events = self.graphql(FAILURES, runId=run_id)["logsForRun"]["events"]
        return [f"{e['stepKey']}: {(e['failureMetadata'] or {}).get('description') or e['error']['message']}"
                for e in events if e["__typename"] == "ExecutionStepFailureEvent"]

    def reexecute_from_failure(self, run_id: str) -> str:
        launched = self.graphql(REEXECUTE, parentRunId=run_id)["launchRunReexecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return launched["run"]["runId"]

    def materialize_selected(self, *assets: str) -> str:
        """What the asset graph's "Materialize selected" launches (the UI tags what it launches)."""
        launched = self.graphql(LAUNCH, job="__ASSET_JOB", assets=[{"path": [asset]} for asset in assets],
                                tags=[{"key": "dagster/from_ui", "value": "true"}])["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return launched["run"]["runId"]

    def wait_until_finished(self, run_id: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while (run := self.run(run_id))["status"] not in TERMINAL:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {run['status']} after {timeout:.0f} s; see {self.log}")
            time.sleep(0.5)
        return run


class DagsterDev(GraphQL):
    """`dg dev` in its own process group, with the project's instance as DAGSTER_HOME."""

    def __init__(self, process: subprocess.Popen, url: str, log: Path):
        super().__init__(url, log)
        self.process = process

    @classmethod
    def start(cls, project: Project, log: Path, **env: str) -> DagsterDev:
        port = free_port()
        environment = {**os.environ, "ATL_PROJECT_DIR": str(project.root),
                       "DAGSTER_HOME": str(project.ensure_instance()), "VIRTUAL_ENV": sys.prefix, **env}
        with log.open("w") as output:
            process = subprocess.Popen(
                [str(Path(sys.executable).parent / "dg"), "dev", "-w", str(REPO / "workspace.yaml"),
                 "-h", "127.0.0.1", "-p", str(port)],
                cwd=REPO, env=environment, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        dev = cls(process, f"http://127.0.0.1:{port}", log)
        dev.wait_ready()
        return dev

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if self.graphql("{ version }").get("version"):
                    return
            except requests.RequestException:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dg dev did not answer; its log:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        """`dg dev` ignores SIGTERM for a long time: kill its whole process group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
