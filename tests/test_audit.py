"""The audit trail (atl_pipeline/operations/audit.py): records only ever appended, chained by
their digests, who each trigger path names; `atl utils audit`. The console's records and the
sensor's: tests/test_access.py; a git push's: tests/test_push.py."""

from __future__ import annotations

import getpass
import json
import threading
from pathlib import Path

import pytest

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
