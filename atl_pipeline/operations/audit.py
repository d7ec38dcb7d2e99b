"""The audit trail: a record of every change to what runs, in `.atl/audit/audit.jsonl`.

Who (the console's user, the OS user of the CLI, a commit's author, a schedule or sensor),
what (the job or the console's request, the stages and their outcome, the plan's changes),
when, and how it ended. Records are only ever appended: one JSON line each, under a lock,
carrying the SHA-256 of the line before it, so `verify` finds a line changed, removed or
put in between.

A chain inside one file cannot show its own end cut off, nor the whole file rewritten with its
digests recomputed. So its head (how many records, the last one's digest) is also anchored
outside the file: in the Dagster instance (an observation of `audit_log`, PostgreSQL's when the
instance is there) and in the central log store (a pipeline line), and `verify` compares the file
with every anchor it finds.

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
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dagster import AssetKey, AssetObservation, DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus

from atl_pipeline.operations import logs
from atl_pipeline.orchestration.dagster_adapter import RETRY_NUMBER_TAG, SCHEDULE_TAG, SENSOR_TAG
from atl_pipeline.orchestration.triggers import TRIGGER_TAG, trigger_of
from atl_pipeline.project import Project

USER_TAG = "atl/user"
FIRST = "0" * 64  # what the first record names as the one before it
ASSET = AssetKey("audit_log")
ANCHORS_READ = 1000  # the newest anchors of each place that `verify` compares
HEAD_LINE = re.compile(r"audit trail: (\d+) records, head ([0-9a-f]{64})")
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


def size(project: Project) -> int:
    try:
        return path(project).stat().st_size
    except FileNotFoundError:
        return 0


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


@dataclass(frozen=True)
class Head:
    """The trail's end: how many records it has, and the digest of the last one."""

    records: int
    digest: str

    def line(self) -> str:
        return f"audit trail: {self.records} records, head {self.digest}"


@dataclass(frozen=True)
class Anchor:
    """A head recorded outside the file: where and when."""

    place: str
    at: datetime
    head: Head


def head(project: Project) -> Head:
    digests = _digests(project)
    return Head(len(digests), digests[-1] if digests else FIRST)


def anchor_in_log_store(project: Project, current: Head) -> None:
    logs.pipeline_line(project, current.line())


def anchor(project: Project, instance: DagsterInstance) -> Head:
    """Record the trail's head in the instance and the log store (what the `audit` sensor does each tick
    that finds new records, for a CLI that writes records while no daemon runs)."""
    current = head(project)
    instance.report_runless_asset_event(AssetObservation(ASSET, metadata=head_metadata(current)))
    anchor_in_log_store(project, current)
    return current


def head_metadata(current: Head) -> dict:
    return {"records": current.records, "head": current.digest}


def anchors(project: Project, instance: DagsterInstance | None) -> list[Anchor]:
    """The newest heads recorded in the instance and in the log store."""
    found = []
    if instance is not None:
        for record in instance.fetch_observations(ASSET, limit=ANCHORS_READ).records:
            values = record.asset_observation.metadata
            if "head" in values and "records" in values:
                found.append(Anchor("the Dagster instance", datetime.fromtimestamp(record.timestamp, UTC),
                                    Head(values["records"].value, values["head"].value)))
    for line in logs.source_lines(project, logs.PIPELINE):
        if match := HEAD_LINE.search(line.fields.get("message", "")):
            found.append(Anchor("the log store", line.time, Head(int(match[1]), match[2])))
    return found


def verify(project: Project, outside: Iterable[Anchor] = ()) -> list[str]:
    """Each place where the chain of digests breaks (a line changed, removed or added in between), and
    each place outside the file whose recorded head the file no longer has (its end cut off, or the
    file rewritten). Anchors older than the trail's last `restore` record are not compared: a restore
    puts an older trail back, and its record says so."""
    problems, digests, restored = [], [], None
    for number, line in enumerate(_lines(project), 1):
        try:
            record = json.loads(line)
            named = record["previous"]
            if record.get("action") == "restore":
                restored = datetime.fromisoformat(record["at"])
        except (ValueError, KeyError, TypeError):
            named = None
        if named != (digests[-1] if digests else FIRST):
            problems.append(f"record {number}: the record before it was changed or removed, or this one was "
                            "put in between")
        digests.append(_digest(line))
    compared = [anchor for anchor in outside if restored is None or anchor.at > restored]
    return problems + _against_anchors(digests, compared)


def _against_anchors(digests: list[str], outside: list[Anchor]) -> list[str]:
    """Per place: the records its newest head names that are missing, and the first head it names that the
    file no longer has."""
    problems = []
    for place in dict.fromkeys(anchor.place for anchor in outside):
        heads = sorted((a for a in outside if a.place == place), key=lambda a: a.head.records)
        if (longest := heads[-1]).head.records > len(digests):
            problems.append(f"records {len(digests) + 1} to {longest.head.records} are missing: {place} recorded "
                            f"{longest.head.records} records at {longest.at:%Y-%m-%d %H:%M:%S} UTC (head "
                            f"{longest.head.digest[:12]}), the file has {len(digests)}: its end was cut off")
        if rewritten := next((a for a in heads if a.head.records and a.head.records <= len(digests)
                              and digests[a.head.records - 1] != a.head.digest), None):
            problems.append(f"record {rewritten.head.records} is not the one {place} recorded at "
                            f"{rewritten.at:%Y-%m-%d %H:%M:%S} UTC (head {rewritten.head.digest[:12]}): the file "
                            "was rewritten up to there")
    return problems


def run_record(instance: DagsterInstance, run: DagsterRun, launched_by: str | None = None) -> dict:
    """What a finished run changed, who asked for it (`launched_by`: the user of the console's record
    of its launch), and how it ended."""
    trigger = trigger_of(run.tags, run.parent_run_id)
    stages = {stats.step_key: stats.status.value.lower() if stats.status else "not run"
              for stats in instance.get_run_step_stats(run.run_id)}
    person = launched_by or who(run.tags, reexecution=run.parent_run_id is not None)
    return {"who": person, "via": trigger, "action": run.job_name, "run_id": run.run_id,
            "outcome": OUTCOMES.get(run.status, run.status.value.lower()), "stages": stages,
            "changes": _plan_changes(instance, run.run_id), **_commit(run.tags)}


def launches(found: Iterable[dict]) -> dict[str, str]:
    """Who launched each run, by the console's records of launches."""
    return {run_id: record["who"] for record in found if record.get("via") in ("console", "api")
            for run_id in [*record.get("run_ids", []), *filter(None, [record.get("run_id")])]}


def who(tags: Mapping[str, str], reexecution: bool = False) -> str:
    """Who started a run, by its tags. A re-execution inherits its parent's tags, which name who started the
    parent: without a launch record it is the daemon's retry, or someone at a console without sign-in."""
    if reexecution:
        return "the daemon (run_retries)" if RETRY_NUMBER_TAG in tags else "a console user (no sign-in)"
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


def _digests(project: Project) -> list[str]:
    return [_digest(line) for line in _lines(project)]


def _lines(project: Project) -> list[bytes]:
    try:
        return path(project).read_bytes().splitlines(keepends=True)
    except FileNotFoundError:
        return []


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
