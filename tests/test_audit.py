"""The audit trail (atl_pipeline/operations/audit.py): records only ever appended, chained by
their digests, who each trigger path names; `atl utils audit`. The console's records and the
sensor's: tests/test_access.py; a git push's: tests/test_push.py."""

from __future__ import annotations

import getpass
import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import DagsterInstance

from atl_pipeline.console.auditor import mutation_fields, tagged
from atl_pipeline.operations import audit
from atl_pipeline.orchestration.runner import run_deploy, stages_until
from atl_pipeline.project import Project
from tests.test_cli import run


def test_records_are_appended_in_order_and_chained(tmp_path: Path):
    project = Project(tmp_path)
    for number in range(3):
        audit.append(project, {"who": "alice", "via": "cli", "action": f"step {number}", "outcome": "success"})
    found = [record for _, record in audit.records(project)]
    assert [record["action"] for record in found] == ["step 0", "step 1", "step 2"]
    assert found[0]["previous"] == audit.FIRST and len({record["previous"] for record in found}) == 3
    assert audit.verify(project) == []
    assert audit.path(project).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("tamper, broken", [
    (lambda lines: [lines[0], lines[1].replace('"failure"', '"success"'), lines[2]], ["record 3"]),  # changed
    (lambda lines: [lines[0], lines[2]], ["record 2"]),  # removed
    (lambda lines: [lines[0], lines[0], *lines[1:]], ["record 2"]),  # put in between
    (lambda lines: [lines[0], "not a record\n", *lines[1:]], ["record 2", "record 3"]),  # not even JSON
])
def test_a_record_changed_removed_or_put_in_between_breaks_the_chain_there(tmp_path: Path, capsys, monkeypatch,
                                                                           tamper, broken: list[str]):
    project = Project(tmp_path)
    for outcome in ("success", "failure", "success"):
        audit.append(project, {"who": "alice", "via": "cli", "action": "deploy", "outcome": outcome})
    lines = audit.path(project).read_text().splitlines(keepends=True)
    audit.path(project).write_text("".join(tamper(lines)))
    assert [problem.split(":")[0] for problem in audit.verify(project)] == broken
    monkeypatch.setenv("ATL_PROJECT_DIR", str(tmp_path))
    code, _, err = run(capsys, "utils", "audit")
    assert code == 1 and f"{broken[0]}: the record before it was changed or removed" in err


def rechained(lines: list[str]) -> list[str]:
    """The records re-linked with their digests recomputed: what an editor of the whole file can do."""
    out, previous = [], audit.FIRST
    for line in lines:
        record = {**json.loads(line), "previous": previous}
        out.append(json.dumps(record, sort_keys=True) + "\n")
        previous = hashlib.sha256(out[-1].encode()).hexdigest()
    return out


@pytest.mark.parametrize("tamper, named", [
    (lambda lines: lines[:-1], "records 20 to 20 are missing: the Dagster instance recorded 20 records"),
    (lambda lines: lines[:-10], "records 11 to 20 are missing: the Dagster instance recorded 20 records"),
    (lambda lines: rechained(lines[:4] + lines[5:]), "records 20 to 20 are missing"),  # one removed, re-linked
    (lambda lines: rechained([lines[0].replace('"step 0"', '"nothing"'), *lines[1:]]),
     "record 1 is not the one the Dagster instance recorded"),  # one changed, re-linked
], ids=["the last record cut", "the last ten cut", "one removed and the file re-linked",
        "one changed and the file re-linked"])
def test_a_trail_cut_or_rewritten_is_named_against_the_heads_recorded_outside_it(tmp_path: Path, capsys, monkeypatch,
                                                                                 tamper, named: str):
    project = Project(tmp_path)
    instance = DagsterInstance.from_config(str(project.ensure_instance()))
    for number in range(20):
        audit.append(project, {"who": "alice", "via": "cli", "action": f"step {number}", "outcome": "success"})
        audit.anchor(project, instance)  # as the CLI does after each record it writes
    monkeypatch.setenv("ATL_PROJECT_DIR", str(tmp_path))
    assert run(capsys, "utils", "audit")[0] == 0

    lines = audit.path(project).read_text().splitlines(keepends=True)
    audit.path(project).write_text("".join(tamper(lines)))
    assert audit.verify(project) in ([], ["record 5: the record before it was changed or removed, or this one was "
                                          "put in between"])  # the chain alone misses it

    code, _, err = run(capsys, "utils", "audit")
    assert code == 1 and named in err, err
    assert "compared with 20 heads recorded outside the file" in err


def test_the_log_stores_heads_count_too_and_a_restore_starts_the_comparison_again(tmp_path: Path):
    project = Project(tmp_path)
    for number in range(3):
        audit.append(project, {"who": "alice", "via": "cli", "action": f"step {number}", "outcome": "success"})
    stored = audit.head(project)
    (tmp_path / ".atl" / "logs").mkdir(parents=True)
    written = datetime.now(UTC) - timedelta(seconds=1)
    line = {"time": written.isoformat(), "source": "pipeline", "message": f"atl: {stored.line()}"}
    (tmp_path / ".atl" / "logs" / "pipeline.jsonl").write_text(json.dumps(line) + "\n")  # as rsyslog stores it
    anchors = audit.anchors(project, None)
    assert [(anchor.place, anchor.head) for anchor in anchors] == [("the log store", stored)]

    lines = audit.path(project).read_text().splitlines(keepends=True)
    audit.path(project).write_text("".join(lines[:2]))
    assert audit.verify(project, anchors) == [
        f"records 3 to 3 are missing: the log store recorded 3 records at {anchors[0].at:%Y-%m-%d %H:%M:%S} UTC "
        f"(head {stored.digest[:12]}), the file has 2: its end was cut off"]
    audit.append(project, {"who": "root (cli)", "via": "cli", "action": "restore", "outcome": "done"})
    assert audit.verify(project, anchors) == []  # the restore's record says why the trail is shorter


def test_writers_at_once_keep_one_chain(tmp_path: Path):
    project = Project(tmp_path)

    def write(writer: int) -> None:
        for number in range(50):
            audit.append(project, {"who": f"writer {writer}", "via": "cli", "action": str(number), "outcome": "ok"})

    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(list(audit.records(project))) == 200 and audit.verify(project) == []


@pytest.mark.parametrize("tags, who", [
    ({"atl/user": "alice", "dagster/from_ui": "true"}, "alice"),
    ({"atl/trigger": "git", "atl/author": "Ada <ada@example.org>", "atl/commit": "0123456789abcdef"},
     "Ada <ada@example.org> (commit 0123456789ab)"),
    ({"dagster/schedule_name": "drift_check"}, "schedule drift_check"),
    ({"dagster/sensor_name": "autoscaler", "atl/trigger": "autoscale"}, "sensor autoscaler"),
    ({}, "unknown"),
])
def test_who_each_trigger_path_names(tags: dict[str, str], who: str):
    assert audit.who(tags) == who


@pytest.mark.parametrize("tags, who", [
    ({"dagster/sensor_name": "domains_file_changed", "atl/trigger": "file"}, "a console user (no sign-in)"),
    ({"atl/user": "root (cli)", "atl/trigger": "cli"}, "a console user (no sign-in)"),
    ({"atl/user": "alice", "dagster/retry_number": "1"}, "the daemon (run_retries)"),
])
def test_a_re_execution_is_not_put_on_whoever_started_its_parent(tags: dict[str, str], who: str):
    """It inherits its parent's tags: who clicked is in the console's record of the launch, else unknown."""
    assert audit.who(tags, reexecution=True) == who
    assert audit.launches([{"who": "bob", "via": "console", "action": "launchPipelineReexecution",
                            "run_id": "r2"}, {"who": "root (cli)", "via": "cli", "run_id": "r3"}]) == {"r2": "bob"}


@pytest.mark.slow
def test_a_cli_run_leaves_its_record_with_the_os_user_and_the_plans_changes(project: Project, capsys):
    outcome = run_deploy(project, stages=stages_until("terraform_apply"))
    assert outcome.success
    (record,) = [record for _, record in audit.records(project)]
    assert (record["who"], record["via"], record["action"], record["run_id"], record["outcome"]) == (
        f"{getpass.getuser()} (cli)", "cli", "deploy", outcome.run_id, "success")
    assert record["changes"] == {"create": 5}
    assert record["stages"]["terraform_apply"] == "success" and "service_deployment" not in record["stages"]
    code, out, _ = run(capsys, "utils", "audit", "--json")
    assert code == 0 and json.loads(out) == record
    code, out, _ = run(capsys, "utils", "audit", "--since", "1h")
    assert code == 0 and f"{getpass.getuser()} (cli)" in out and "5 to create" in out


def test_the_auditor_tags_every_kind_of_launch_and_reads_the_operation_as_dagster_does():
    assert tagged({"reexecutionParams": {"parentRunId": "r", "strategy": "ALL_STEPS"}}, "alice") == {
        "reexecutionParams": {"parentRunId": "r", "strategy": "ALL_STEPS",
                              "extraTags": [{"key": "atl/user", "value": "alice"}]}}
    assert tagged({"executionParamsList": [{"selector": {}}]}, "alice")["executionParamsList"][0][
        "executionMetadata"] == {"tags": [{"key": "atl/user", "value": "alice"}]}
    assert tagged({"backfillParams": {"tags": [{"key": "atl/user", "value": "x"}]}}, "bob") == {
        "backfillParams": {"tags": [{"key": "atl/user", "value": "bob"}]}}
    two = 'query Q { version } mutation M { logTelemetry(action: "a", clientTime: "1", clientId: "c") { __typename } }'
    assert mutation_fields({"query": two, "operationName": "M"}) == ["logTelemetry"]
    assert mutation_fields({"query": two, "operationName": "Q"}) == []
    assert mutation_fields({"query": "{ version }"}) == []
