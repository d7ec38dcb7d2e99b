"""End to end through a real `dg dev`: a push to a bare repository starts a run through
the git_push sensor and the daemon; a broken release fails its health check and is rolled
back; a failed run is re-executed from failure through GraphQL; the UI shows it all in
headless Chromium. One `dg dev` serves the whole module; the tests run in order."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from dataclasses import dataclass

import pytest

from atl_pipeline.project import Project
from atl_pipeline.runtime.local import deployed_runtime
from tests.browser import ARTIFACTS, CHROMIUM_FLAGS, chromium, skip_welcome
from tests.conftest import copy_project, kill_stack
from tests.dagster_dev import TERMINAL, DagsterDev
from tests.dagster_helpers import audit_record
from tests.git_helpers import Remote
from tests.runtime_helpers import through_lb, wait_for

pytestmark = pytest.mark.slow  # dagster dev, git, the deployed stack, Chromium

STAGES = ["domain_config", "validated_config", "terraform_plan", "terraform_apply", "service_deployment",
          "health_check", "monitoring", "certificates"]
API = "api.allthingslinux.org"


@dataclass
class Stack:
    project: Project
    remote: Remote
    dev: DagsterDev

    def steps(self, run: dict) -> dict[str, str]:
        return {step["stepKey"]: step["status"] for step in run["stepStats"]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("e2e")
    project = copy_project(root / "project")
    remote = Remote.create(root, project.root)
    dev = DagsterDev.start(project, root / "dagster-dev.log", ATL_GIT_REMOTE=str(remote.origin),
                           ATL_GIT_BRANCH="main")
    try:
        yield Stack(project, remote, dev)
    finally:
        dev.stop()
        kill_stack(project)


def test_a_push_runs_every_stage(stack: Stack):
    first = stack.dev.wait_for_run({"atl/commit": stack.remote.git("rev-parse", "HEAD").strip()})
    assert first["status"] == "SUCCESS", stack.steps(first)

    sha = stack.remote.edit("domains.yml", "replicas: 3", "replicas: 2", "api: two replicas")
    run = stack.dev.wait_for_run({"atl/commit": sha})

    assert run["status"] == "SUCCESS"
    assert stack.steps(run) == dict.fromkeys(STAGES, "SUCCESS")
    tags = {tag["key"]: tag["value"] for tag in run["tags"]}
    assert (tags["atl/trigger"], tags["dagster/run_key"], tags["atl/message"]) == ("git", sha, "api: two replicas")
    assert len(deployed_runtime(stack.project).deployed()["services"]["backend-api"]["ports"]) == 2


def test_a_broken_release_fails_its_health_check_and_rolls_back(stack: Stack):
    serving = deployed_runtime(stack.project).deployed()["services"]["backend-api"]["release"]
    sha = stack.remote.edit("domains.yml", '"{port}"]', f'"{{port}}", --unhealthy-for-host, {API}]',
                            "backend-api: a release that fails for its site")
    run = stack.dev.wait_for_run({"atl/commit": sha})

    assert run["status"] == "FAILURE"
    steps = stack.steps(run)
    assert steps["service_deployment"] == "SUCCESS" and steps["health_check"] == "FAILURE"
    assert "monitoring" not in steps and "certificates" not in steps
    assert deployed_runtime(stack.project).deployed()["services"]["backend-api"]["release"] == serving
    assert through_lb(stack.project, API, "/healthz").status == 200


def test_a_failed_run_reexecuted_from_failure_runs_only_the_failed_stages(stack: Stack):
    record = deployed_runtime(stack.project).deployed()["services"]["backend-api"]
    standby = record["standby_ports" if record["slot"] == 0 else "ports"][0]
    squatter = socket.create_server(("127.0.0.1", standby))  # another program holds the port the roll needs
    text = (stack.project.root / "domains.yml").read_text()
    (stack.project.root / "domains.yml").write_text(
        text.replace(f'"{{port}}", --unhealthy-for-host, {API}]', '"{port}"]').replace("api:1.0.0", "api:1.1.0"))
    sha = stack.remote.commit("backend-api 1.1.0", "domains.yml")
    failed = stack.dev.wait_for_run({"atl/commit": sha})
    assert failed["status"] == "FAILURE" and stack.steps(failed)["service_deployment"] == "FAILURE"

    tried = release_of(stack.dev.metadata(failed["runId"], "terraform_apply")["services"], "backend-api")
    squatter.close()  # the operator fixes the cause; meanwhile a newer release is deployed
    newer = stack.dev.wait_for_run({"atl/commit": stack.remote.edit("domains.yml", "api:1.1.0", "api:1.2.0",
                                                                      "backend-api 1.2.0")})
    assert newer["status"] == "SUCCESS"
    assert deployed_runtime(stack.project).deployed()["services"]["backend-api"]["release"] != tried

    child = stack.dev.wait_until_finished(stack.dev.reexecute_from_failure(failed["runId"]))

    assert child["status"] == "SUCCESS" and child["parentRunId"] == failed["runId"]
    assert tag(child, "atl/trigger") == f"re-execution of {failed['runId']}" and tag(child, "atl/commit") == sha
    assert stack.steps(child) == dict.fromkeys(STAGES[4:], "SUCCESS")
    # what the failed run tried, as its record says: not the newer release, whose outputs are the latest
    assert deployed_runtime(stack.project).deployed()["services"]["backend-api"]["release"] == tried
    assert through_lb(stack.project, API, "/healthz").status == 200


def release_of(services: str, service: str) -> str:
    """A service's release in a stage's `services` table (Markdown)."""
    (row,) = [line for line in services.splitlines() if line.startswith(f"| {service} |")]
    return row.split("|")[2].strip()


def test_a_stage_materialized_alone_is_followed_by_the_later_ones(stack: Stack):
    """As an operator clicking "Materialize selected" on service_deployment in the asset graph: the
    automation sensor runs health_check, monitoring and certificates after it, by themselves."""
    # the earlier tests' runs over, and seen by the automation: a stage that materializes in the same tick as
    # the stage before it is not followed (eager's "since its own update")
    wait_for("no run for two automation ticks", lambda: quiet(stack, seconds=10), timeout=180)
    alone = stack.dev.wait_until_finished(stack.dev.materialize_selected("service_deployment"))
    assert alone["status"] == "SUCCESS" and {step for step in stack.steps(alone) if step in STAGES} == {
        "service_deployment"}  # and its drift check, which the UI runs with it
    assert tag(alone, "atl/trigger") == "ui"

    followed = wait_for_automation(stack, after=alone, until={"health_check", "monitoring", "certificates"})
    assert all(run["status"] == "SUCCESS" for run in followed)
    assert all(tag(run, "dagster/from_automation_condition") == "true" for run in followed)
    assert through_lb(stack.project, API, "/healthz").status == 200


def quiet(stack: Stack, seconds: float) -> bool:
    """No run in progress, and none ended in the last `seconds`."""
    runs = stack.dev.runs({})
    return all(run["status"] in TERMINAL for run in runs) and all(
        time.time() - (run["endTime"] or 0) > seconds for run in runs)


def wait_for_automation(stack: Stack, after: dict, until: set[str], timeout: float = 180) -> list[dict]:
    """The automation sensor's finished runs created since `after` was (it follows as soon as a stage
    materializes, maybe before `after` ends), once they have run every stage of `until`."""
    deadline = time.monotonic() + timeout
    while True:
        runs = [run for run in stack.dev.runs({"atl/trigger": "automation"})
                if run["creationTime"] > after["creationTime"] and run["status"] in TERMINAL]
        if {step for run in runs for step in stack.steps(run)} >= until:
            return runs
        assert time.monotonic() < deadline, f"automation ran {runs} after service_deployment alone, not {until}"
        time.sleep(0.5)


def tag(run: dict, key: str) -> str | None:
    return next((item["value"] for item in run["tags"] if item["key"] == key), None)


def test_a_run_whose_worker_is_killed_is_retried_from_failure(stack: Stack):
    sha = stack.remote.edit("domains.yml", "replicas: 2", "replicas: 3", "api: three replicas again")
    run = wait_for_stage(stack, {"atl/commit": sha}, "service_deployment")
    worker = run_worker_pid(stack, run["runId"])
    os.kill(worker, signal.SIGKILL)  # the process running the run dies mid-roll

    killed = stack.dev.wait_until_finished(run["runId"])
    retry = stack.dev.wait_for_run({"dagster/parent_run_id": run["runId"]})

    assert killed["status"] == "FAILURE"
    assert retry["status"] == "SUCCESS" and retry["parentRunId"] == run["runId"]
    assert "domain_config" not in stack.steps(retry)  # from failure: the stages that had finished are kept
    assert stack.steps(retry)["certificates"] == "SUCCESS"
    assert len(deployed_runtime(stack.project).deployed()["services"]["backend-api"]["ports"]) == 3


def test_two_pushes_in_quick_succession_run_in_order_and_the_newer_wins(stack: Stack):
    first = stack.remote.edit("domains.yml", '"{port}"]', '"{port}", --slow-start, "6"]',
                              "backend-api: a release that takes 6 s to start")
    running = wait_for_stage(stack, {"atl/commit": first}, "service_deployment")
    second = stack.remote.edit("domains.yml", '"{port}", --slow-start, "6"]', '"{port}"]',
                               "backend-api: starts at once again")

    newer = stack.dev.wait_for_run({"atl/commit": second})
    older = stack.dev.run(running["runId"])
    assert (older["status"], newer["status"]) == ("SUCCESS", "SUCCESS")
    assert newer["creationTime"] < older["endTime"] <= newer["startTime"]  # queued behind it, not interleaved
    command = deployed_runtime(stack.project).deployed()["services"]["backend-api"]["command"]
    assert "--slow-start" not in command
    assert through_lb(stack.project, API, "/healthz").status == 200


def wait_for_stage(stack: Stack, tags: dict[str, str], stage: str, timeout: float = 180) -> dict:
    """The newest run with these tags, once `stage` has started in it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = stack.dev.runs(tags)
        if runs and stack.steps(runs[0]).get(stage) == "IN_PROGRESS":
            return runs[0]
        time.sleep(0.2)
    raise TimeoutError(f"{stage} did not start in a run tagged {tags}")


def run_worker_pid(stack: Stack, run_id: str) -> int:
    """The process executing the run, as its event log names it ("Started process for run (pid: N)")."""
    for message in stack.dev.messages(run_id):
        if found := re.search(r"Started process for run \(pid: (\d+)\)", message):
            return int(found.group(1))
    raise LookupError(f"run {run_id} names no process")


def test_a_broken_file_fixed_then_its_run_re_executed_tells_the_truth(stack: Stack):
    """A domains.yml that fails validation, fixed by the next push, then the broken run re-executed from
    failure, as from the UI: it validates the broken commit again, as its tags say, deploys nothing, and
    the run page's first screen says what to fix (the next test opens it)."""
    broken = stack.remote.edit("domains.yml", 'service: "backend-api"', 'service: "backend-apix"', "a typo")
    failed = stack.dev.wait_for_run({"atl/commit": broken})
    assert failed["status"] == "FAILURE" and stack.steps(failed)["validated_config"] == "FAILURE"
    fixed = stack.remote.edit("domains.yml", 'service: "backend-apix"', 'service: "backend-api"', "the typo fixed")
    assert stack.dev.wait_for_run({"atl/commit": fixed})["status"] == "SUCCESS"
    serving = deployed_runtime(stack.project).deployed()["services"]["backend-api"]["release"]  # the fixed file's

    child = stack.dev.wait_until_finished(stack.dev.reexecute_from_failure(failed["runId"]))

    assert child["status"] == "FAILURE" and stack.steps(child) == {"validated_config": "FAILURE"}
    assert tag(child, "atl/commit") == broken
    (failure,) = stack.dev.failures(child["runId"])
    assert FINDING in failure and "blocking asset check" not in failure
    assert deployed_runtime(stack.project).deployed()["services"]["backend-api"]["release"] == serving
    record = audit_record(stack.project, lambda r: r.get("run_id") == child["runId"])
    assert (record["who"], record["via"]) == ("a console user (no sign-in)", f"re-execution of {failed['runId']}")


FINDING = "service 'backend-apix' is not defined; did you mean 'backend-api'?"


def test_the_ui_shows_the_asset_graph_and_the_run(stack: Stack):
    from playwright.sync_api import expect, sync_playwright

    (run, *_) = stack.dev.runs({"atl/trigger": "git"})
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{stack.dev.url}/locations/atl/asset-groups/deploy")
        skip_welcome(page)
        for stage in STAGES:
            expect(page.get_by_text(stage, exact=True).first).to_be_visible(timeout=20_000)
        page.screenshot(path=ARTIFACTS / "asset-graph.png")

        page.goto(f"{stack.dev.url}/runs/{run['runId']}")
        expect(page.get_by_text("RUN_SUCCESS" if run["status"] == "SUCCESS" else "RUN_FAILURE").first
               ).to_be_visible(timeout=20_000)
        expect(page.get_by_text("Launched by git_push").first).to_be_visible()
        page.screenshot(path=ARTIFACTS / "run.png")

        (failed, *_) = [run for run in stack.dev.runs({}) if run["parentRunId"] and run["status"] == "FAILURE"]
        page.goto(f"{stack.dev.url}/runs/{failed['runId']}")
        expect(page.get_by_text(FINDING).first).to_be_visible(timeout=20_000)  # no click: on the first screen
        page.screenshot(path=ARTIFACTS / "failed-run.png")
        browser.close()
    assert (ARTIFACTS / "asset-graph.png").stat().st_size > 10_000

