"""Run the deploy job in a project's Dagster instance, reporting each stage as it ends.

The run is an ordinary Dagster run of the `deploy` job, so it shows in the UI's run
history beside the runs that sensors start. Stage events are read back from the
instance's event log while the run executes in this process.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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

from atl_pipeline.definitions import backup_job, deploy_job, drift_job
from atl_pipeline.errors import AtlError
from atl_pipeline.operations import audit
from atl_pipeline.orchestration.dagster_adapter import runs_holding_pool
from atl_pipeline.orchestration.stage import APPROVAL_CHECK, POOL
from atl_pipeline.orchestration.triggers import TRIGGER_TAG
from atl_pipeline.project import LockTimeout, Project, lock_timeout
from atl_pipeline.timings import Timings

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
    status: str  # "ok", "failed", "skipped", "check failed", or "needs approval" (held by the destroy check)
    seconds: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    success: bool
    status: str
    metadata: dict[str, dict] = field(default_factory=dict)  # by stage: what it materialized
    needs_approval: bool = False  # stopped only because the plan deletes or replaces resources


def run_deploy(project: Project, domains_file: Path | None = None,
               on_stage: Callable[[StageEvent], None] = lambda event: None,
               tags: dict[str, str] | None = None,
               on_wait: Callable[[str], None] = lambda message: None,
               stages: Sequence[str] | None = None,
               options: dict[str, dict] | None = None,
               on_start: Callable[[str], None] = lambda stage: None,
               timings: Timings | None = None) -> RunOutcome:
    """Run the deploy job in the project's instance: every stage, or `stages` (the others load
    from storage). `options` are stage configurations, such as {"terraform_plan": {"domain": ...}};
    `timings`, how long the stages wait (the `target` resource's fields)."""
    instance = DagsterInstance.from_config(str(project.ensure_instance()))
    ops = {stage: {"config": value} for stage, value in (options or {}).items()}
    if domains_file is not None:
        ops["domain_config"] = {"config": {"path": str(domains_file.resolve())}}
    run_config = _run_config(project, ops, timings)
    _wait_for_pool(instance, on_wait)
    marker = uuid.uuid4().hex
    selected = list(stages or stages_until())
    watcher = _StageWatcher(instance, marker, selected, on_stage, on_start)
    watcher.start()
    try:
        result = execute_job(deploy_subset(selected) if stages else reconstructable(deploy_job), instance,
                             run_config=run_config,
                             tags={**_cli_tags(), "atl/invocation": marker, **(tags or {})})
    finally:
        watcher.finish()
    run = _audited(project, instance, result.run_id)
    return RunOutcome(result.run_id, result.success, run.status.value if run else "UNKNOWN", watcher.metadata,
                      needs_approval=watcher.held and not result.success)


class DriftNotChecked(AtlError):
    """The drift job could not evaluate its check (nothing deployed yet, say)."""


@dataclass(frozen=True)
class DriftOutcome:
    run_id: str
    passed: bool
    lines: list[str]


def run_drift(project: Project, *, heal: bool = False) -> DriftOutcome:
    """Run the drift job, as its schedule does, and read the `no_drift` check it evaluated."""
    instance = DagsterInstance.from_config(str(project.ensure_instance()))
    run_config = _run_config(project, {"service_deployment_no_drift": {"config": {"heal": heal}}})
    with execute_job(reconstructable(drift_job), instance, run_config=run_config, tags=_cli_tags()) as result:
        checks = [event.event_specific_data for event in result.all_events
                  if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION]
        failure = "" if checks else _failure(result)
    _audited(project, instance, result.run_id)
    if not checks:
        raise DriftNotChecked(f"run {result.run_id}: {failure or 'the drift check did not run'}; "
                              "has anything been deployed?")
    evaluation = checks[0]
    listed = str(evaluation.metadata["drift"].value).splitlines()
    return DriftOutcome(result.run_id, evaluation.passed, [line[2:] for line in listed if line.startswith("- ")])


@dataclass(frozen=True)
class BackupOutcome:
    run_id: str
    success: bool
    metadata: dict  # what `backups` materialized
    error: str = ""


def run_backup(project: Project, on_wait: Callable[[str], None] = lambda message: None) -> BackupOutcome:
    """Run the backup job, as its schedule does, once no deploy holds the pool."""
    instance = DagsterInstance.from_config(str(project.ensure_instance()))
    _wait_for_pool(instance, on_wait)
    with execute_job(reconstructable(backup_job), instance, run_config=_run_config(project, {}),
                     tags=_cli_tags(), raise_on_error=False) as result:
        materialized = [event.event_specific_data.materialization for event in result.all_events
                        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION]
        error = _failure(result)
    _audited(project, instance, result.run_id)
    values = {key: value.value for key, value in materialized[0].metadata.items()} if materialized else {}
    return BackupOutcome(result.run_id, result.success, values, error)


def _cli_tags() -> dict[str, str]:
    return {TRIGGER_TAG: "cli", audit.USER_TAG: audit.cli_user()}


def _audited(project: Project, instance: DagsterInstance, run_id: str):
    """The run, once its audit record is written (the `audit` sensor leaves the CLI's runs to it)."""
    run = instance.get_run_by_id(run_id)
    audit.append(project, audit.run_record(instance, run))
    audit.anchor(project, instance)
    return run


def _failure(result) -> str:
    """What the run's first failed stage said: its Failure's description, else the error's message."""
    failure = next((event.step_failure_data for event in result.all_events if event.is_step_failure), None)
    if failure is None:
        return ""
    if failure.user_failure_data and failure.user_failure_data.description:
        return failure.user_failure_data.description
    return failure.error.message.strip() if failure.error else ""


def end_interrupted_runs(project: Project, reason: str) -> list[str]:
    """Mark canceled the runs a restored instance holds as queued or in progress (the backup that took
    the snapshot, at least): no process runs them any more, and they would hold the deploy pool."""
    instance = DagsterInstance.from_config(str(project.ensure_instance()))
    interrupted = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.QUEUED, *IN_PROGRESS]))
    for run in interrupted:
        instance.report_run_canceled(run, message=reason)
    return [run.run_id for run in interrupted]


def deploy_subset(stages: Sequence[str]):
    """The deploy job (reconstructable) for these stages and their own checks only (a plain asset
    selection would also take in the drift check, which targets `service_deployment`)."""
    keys = {AssetKey(stage) for stage in stages}
    checks = {key for key in deploy_job().asset_layer.asset_graph.asset_check_keys if key.asset_key in keys}
    return reconstructable(deploy_job).get_subset(asset_selection=keys, asset_check_selection=checks)


def _run_config(project: Project, ops: dict, timings: Timings | None = None) -> dict:
    """The project the run works on (and how long its stages wait, when not the defaults); the
    terminal shows stages itself, so Dagster's console stays quiet."""
    resources = {"project": {"config": {"root": str(project.root)}}}
    if timings is not None:
        resources["target"] = {"config": dataclasses.asdict(timings)}
    return {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}, "resources": resources, "ops": ops}


@functools.cache
def _deploy_stages() -> tuple[str, ...]:
    return tuple(node.name for node in deploy_job().graph.nodes_in_topological_order)


def stages_until(until: str | None = None) -> list[str]:
    """The deploy job's stages in order, up to and including `until` (all of them by default)."""
    stages = list(_deploy_stages())
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
    while busy := runs_holding_pool(instance, POOL, IN_PROGRESS):
        run = busy[0]
        if time.monotonic() > deadline:
            raise LockTimeout(f"run {run.run_id} has held the pool {POOL} for {timeout:.0f} s; if its "
                              "process is gone, terminate it in the Dagster UI (Runs, then Terminate)")
        if run.run_id not in told:
            told.add(run.run_id)
            on_wait(f"waiting for run {run.run_id} ({run.job_name}) to finish")
        time.sleep(0.5)


class _StageWatcher(threading.Thread):
    """Follows the event log of the run tagged with `marker` and reports stage ends."""

    def __init__(self, instance: DagsterInstance, marker: str, stages: list[str],
                 on_stage: Callable[[StageEvent], None], on_start: Callable[[str], None]):
        super().__init__(daemon=True)
        self.instance, self.marker, self.stages = instance, marker, stages
        self.on_stage, self.on_start = on_stage, on_start
        self.reported: set[str] = set()
        self.done = threading.Event()
        self.run_id: str | None = None
        self.cursor: str | None = None
        self.started: dict[str, float] = {}
        self.metadata: dict[str, dict] = {}
        self.held = False  # the destroy check stopped the run: it waits for approval
        self.blocked: set[str] = set()  # steps whose blocking check failed

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
            self.on_start(step)
        elif kind == DagsterEventType.ASSET_MATERIALIZATION:
            self.metadata[step] = {key: value.value for key, value in data.materialization.metadata.items()}
        elif kind == DagsterEventType.ASSET_CHECK_EVALUATION and not data.passed:
            self.held = data.check_name == APPROVAL_CHECK
            if data.blocking:
                self.blocked.add(step)
            self.on_stage(StageEvent(f"{step}:{data.check_name}", "needs approval" if self.held else "check failed",
                                     detail=data.description or ""))
        elif kind == DagsterEventType.STEP_SUCCESS:
            self.report(StageEvent(step, "ok", seconds, str(self.metadata.get(step, {}).get("summary", ""))))
        elif kind == DagsterEventType.STEP_FAILURE:
            failure = data.user_failure_data
            if failure and failure.description:
                detail = failure.description
            elif step in self.blocked:
                detail = "waits for approval; no later stage runs" if self.held else \
                    "a blocking check failed; no later stage runs"
            elif data.error and data.error.cause:  # not one of our errors: a bug, whose traceback the run keeps
                detail = (f"{data.error.cause.message.strip()} (an internal error: its traceback is in the "
                          f"logs of run {self.run_id} in the Dagster UI; please report it)")
            else:
                detail = data.error.message if data.error else "failed"
            self.report(StageEvent(step, "needs approval" if self.held else "failed", seconds, detail.strip()))
        elif kind == DagsterEventType.STEP_SKIPPED:
            self.report(StageEvent(step, "skipped"))
