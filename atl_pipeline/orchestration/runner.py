"""Run the deploy job in a project's Dagster instance, reporting each stage as it ends.

The run is an ordinary Dagster run of the `deploy` job, so it shows in the UI's run
history beside the runs that sensors start. Stage events are read back from the
instance's event log while the run executes in this process.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    RunsFilter,
    execute_job,
    reconstructable,
)

from atl_pipeline.definitions import deploy_job
from atl_pipeline.orchestration.assets import POOL
from atl_pipeline.project import Project, lock_timeout

IN_PROGRESS = [DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED,
               DagsterRunStatus.CANCELING]

_WATCHED = {
    DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE,
    DagsterEventType.STEP_SKIPPED, DagsterEventType.ASSET_MATERIALIZATION,
    DagsterEventType.ASSET_CHECK_EVALUATION,
}


@dataclass(frozen=True)
class StageEvent:
    stage: str
    status: str  # "ok", "failed", "skipped" or "check failed"
    seconds: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    success: bool
    status: str


def run_deploy(project: Project, domains_file: Path | None = None,
               on_stage: Callable[[StageEvent], None] = lambda event: None,
               tags: dict[str, str] | None = None,
               on_wait: Callable[[str], None] = lambda message: None,
               until: str | None = None) -> RunOutcome:
    """Run the deploy job, every stage or the stages up to `until`, in the project's instance."""
    instance = DagsterInstance.from_config(str(project.ensure_instance()))
    run_config: dict = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
                        "resources": {"project": {"config": {"root": str(project.root)}}}}
    if domains_file is not None:
        run_config["ops"] = {"domain_config": {"config": {"path": str(domains_file.resolve())}}}
    _wait_for_pool(instance, on_wait)
    marker = uuid.uuid4().hex
    stages = stages_until(until)
    watcher = _StageWatcher(instance, marker, stages, on_stage)
    watcher.start()
    try:
        result = execute_job(reconstructable(deploy_job), instance, run_config=run_config,
                             tags={"atl/trigger": "cli", "atl/invocation": marker, **(tags or {})},
                             asset_selection=[AssetKey(stage) for stage in stages] if until else None)
    finally:
        watcher.finish()
    run = instance.get_run_by_id(result.run_id)
    return RunOutcome(result.run_id, result.success, run.status.value if run else "UNKNOWN")


def stages_until(until: str | None = None) -> list[str]:
    """The deploy job's stages in order, up to and including `until` (all of them by default)."""
    stages = [node.name for node in deploy_job().graph.nodes_in_topological_order]
    if until is None:
        return stages
    if until not in stages:
        raise ValueError(f"no stage {until!r}; the stages are {', '.join(stages)}")
    return stages[:stages.index(until) + 1]


def _wait_for_pool(instance: DagsterInstance, on_wait: Callable[[str], None]) -> None:
    """One deploy at a time: the daemon queues its runs behind this one, and this one waits for
    the daemon's run in progress (the run queue does not hold runs executed in-process)."""
    timeout = lock_timeout()
    deadline = time.monotonic() + timeout
    told: set[str] = set()
    while busy := [run for run in instance.get_runs(RunsFilter(statuses=IN_PROGRESS))
                   if run.run_op_concurrency and POOL in (run.run_op_concurrency.all_pools or ())]:
        run = busy[0]
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run.run_id} has held the pool {POOL} for {timeout:.0f} s; if its "
                               "process is gone, terminate it in the Dagster UI (Runs, then Terminate)")
        if run.run_id not in told:
            told.add(run.run_id)
            on_wait(f"waiting for run {run.run_id} ({run.job_name}) to finish")
        time.sleep(0.5)


class _StageWatcher(threading.Thread):
    """Follows the event log of the run tagged with `marker` and reports stage ends."""

    def __init__(self, instance: DagsterInstance, marker: str, stages: list[str],
                 on_stage: Callable[[StageEvent], None]):
        super().__init__(daemon=True)
        self.instance, self.marker, self.stages, self.on_stage = instance, marker, stages, on_stage
        self.reported: set[str] = set()
        self.done = threading.Event()
        self.run_id: str | None = None
        self.cursor: str | None = None
        self.started: dict[str, float] = {}
        self.summaries: dict[str, str] = {}

    def run(self) -> None:
        while not self.done.wait(0.1):
            self.poll()

    def finish(self) -> None:
        """Report what is left of the run, and the stages that never ran."""
        self.done.set()
        self.join()
        self.poll()
        for stage in self.stages:
            if stage not in self.reported:
                self.report(StageEvent(stage, "skipped", detail="not run: an earlier stage failed"))

    def report(self, event: StageEvent) -> None:
        self.reported.add(event.stage)
        self.on_stage(event)

    def poll(self) -> None:
        if self.run_id is None:
            runs = self.instance.get_runs(RunsFilter(tags={"atl/invocation": self.marker}), limit=1)
            if not runs:
                return
            self.run_id = runs[0].run_id
        connection = self.instance.get_records_for_run(self.run_id, cursor=self.cursor, of_type=_WATCHED)
        self.cursor = connection.cursor
        for record in connection.records:
            self.handle(record.event_log_entry)

    def handle(self, entry) -> None:
        event = entry.dagster_event
        step, kind, data = event.step_key, event.event_type, event.event_specific_data
        seconds = round(entry.timestamp - self.started[step], 3) if step in self.started else None
        if kind == DagsterEventType.STEP_START:
            self.started[step] = entry.timestamp
        elif kind == DagsterEventType.ASSET_MATERIALIZATION:
            summary = data.materialization.metadata.get("summary")
            self.summaries[step] = str(summary.value) if summary else ""
        elif kind == DagsterEventType.ASSET_CHECK_EVALUATION and not data.passed:
            self.on_stage(StageEvent(f"{step}:{data.check_name}", "check failed",
                                     detail=data.description or ""))
        elif kind == DagsterEventType.STEP_SUCCESS:
            self.report(StageEvent(step, "ok", seconds, self.summaries.get(step, "")))
        elif kind == DagsterEventType.STEP_FAILURE:
            failure = data.user_failure_data
            if failure and failure.description:
                detail = failure.description
            elif data.error and data.error.cls_name == "DagsterAssetCheckFailedError":
                detail = "a blocking check failed; no later stage runs"
            else:
                detail = data.error.message if data.error else "failed"
            self.report(StageEvent(step, "failed", seconds, detail.strip()))
        elif kind == DagsterEventType.STEP_SKIPPED:
            self.report(StageEvent(step, "skipped"))
