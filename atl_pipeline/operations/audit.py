"""The audit trail: a record of every change to what runs, in `.atl/audit/audit.jsonl`.

Who (the console's user, the OS user of the CLI, a commit's author, a schedule or sensor),
what (the job or the console's request, the stages and their outcome, the plan's changes),
when, and how it ended. Records are only ever appended: one JSON line each, under a lock,
carrying the SHA-256 of the line before it, so `verify` finds a line changed, removed or
put in between.

A run's record is written when it ends: by the CLI for its own runs, by the `audit` sensor
for every other run. The console writes a record for each change an operator asks of
Dagster (a launch, a re-execution, a sensor or schedule switched).
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus

from atl_pipeline.orchestration.dagster_adapter import SCHEDULE_TAG, SENSOR_TAG
from atl_pipeline.orchestration.triggers import TRIGGER_TAG, trigger_of
from atl_pipeline.project import Project

USER_TAG = "atl/user"
FIRST = "0" * 64  # what the first record names as the one before it
OUTCOMES = {DagsterRunStatus.SUCCESS: "success", DagsterRunStatus.FAILURE: "failure",
            DagsterRunStatus.CANCELED: "canceled"}


def path(project: Project) -> Path:
    return project.state_dir / "audit" / "audit.jsonl"


def cli_user() -> str:
    return f"{getpass.getuser()} (cli)"


def append(project: Project, record: Mapping) -> dict:
    """Add a record (its time and the previous line's digest are added here); returns it as written."""
    log = path(project)
    log.parent.mkdir(parents=True, exist_ok=True)
    with _locked(log.parent / "lock"):
        written = {"at": datetime.now(UTC).isoformat(timespec="milliseconds"), **record, "previous": _last(log)}
        line = json.dumps(written, sort_keys=True) + "\n"
        descriptor = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, line.encode())
        finally:
            os.close(descriptor)
    return written


def records(project: Project, since: datetime | None = None, offset: int = 0) -> Iterator[tuple[int, dict]]:
    """(the offset after it, record) of each record from the byte `offset`, at or after `since`."""
    try:
        with path(project).open("rb") as log:
            log.seek(offset)
            for line in log:
                offset += len(line)
                try:
                    record = json.loads(line)
                    at = datetime.fromisoformat(record["at"])
                except (ValueError, KeyError, TypeError):
                    continue  # not a record any more: `verify` says where
                if since is None or at >= since:
                    yield offset, record
    except FileNotFoundError:
        return


def verify(project: Project) -> list[str]:
    """Each place where the chain of digests breaks: a line changed, removed or added in between."""
    problems, previous = [], FIRST
    try:
        lines = path(project).read_bytes().splitlines(keepends=True)
    except FileNotFoundError:
        return []
    for number, line in enumerate(lines, 1):
        try:
            named = json.loads(line)["previous"]
        except (ValueError, KeyError, TypeError):
            named = None
        if named != previous:
            problems.append(f"record {number}: the record before it was changed or removed, or this one was "
                            "put in between")
        previous = _digest(line)
    return problems


def run_record(instance: DagsterInstance, run: DagsterRun) -> dict:
    """What a finished run changed, who asked for it, and how it ended."""
    trigger = trigger_of(run.tags, run.parent_run_id)
    stages = {stats.step_key: stats.status.value.lower() if stats.status else "not run"
              for stats in instance.get_run_step_stats(run.run_id)}
    return {"who": who(run.tags), "via": trigger, "action": run.job_name, "run_id": run.run_id,
            "outcome": OUTCOMES.get(run.status, run.status.value.lower()), "stages": stages,
            "changes": _plan_changes(instance, run.run_id), **_commit(run.tags)}


def who(tags: Mapping[str, str]) -> str:
    if user := tags.get(USER_TAG):
        return user
    if tags.get(TRIGGER_TAG) == "git" and "atl/author" in tags:
        return f"{tags['atl/author']} (commit {tags.get('atl/commit', '?')[:12]})"
    for tag, kind in ((SCHEDULE_TAG, "schedule"), (SENSOR_TAG, "sensor")):
        if tag in tags:
            return f"{kind} {tags[tag]}"
    return "unknown"


def _commit(tags: Mapping[str, str]) -> dict:
    return {"commit": tags["atl/commit"]} if "atl/commit" in tags else {}


def _plan_changes(instance: DagsterInstance, run_id: str) -> dict[str, int]:
    for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records:
        materialization = record.event_log_entry.asset_materialization
        if materialization and materialization.asset_key == AssetKey("terraform_plan"):
            values = materialization.metadata
            return {action: values[action].value for action in ("create", "update", "delete", "replace")
                    if action in values and values[action].value}
    return {}


def _last(log: Path) -> str:
    """The digest of the file's last line; FIRST when it has none."""
    try:
        with log.open("rb") as stream:
            stream.seek(0, os.SEEK_END)
            size = stream.tell()
            stream.seek(max(0, size - 65536))
            tail = stream.read().splitlines(keepends=True)
    except FileNotFoundError:
        return FIRST
    return _digest(tail[-1]) if tail else FIRST


def _digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


@contextmanager
def _locked(lock: Path) -> Iterator[None]:
    descriptor = os.open(lock, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)
