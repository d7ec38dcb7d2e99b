"""The audit trail in the UI: the `audit` sensor writes the record of each run that ends (the CLI
writes its own runs'), and shows each new record of the trail (the console's requests too) as an
observation of `audit_log`, whose metadata anchors the trail's head in the instance; the same head
goes to the central log store (atl_pipeline.operations.audit)."""

import json
from datetime import UTC, datetime

import dagster as dg

from atl_pipeline.operations import audit
from atl_pipeline.orchestration.resources import ProjectResource
from atl_pipeline.orchestration.triggers import TRIGGER_TAG
from atl_pipeline.project import Project
from atl_pipeline.report import audit_metadata

AUDIT_SECONDS = 5
BATCH = 200
LAUNCHES_KEPT = 500  # the console's launches whose runs have not ended yet, at most

audit_log = dg.AssetSpec(audit.ASSET, group_name="operations", kinds={"audit"},
                         description="Every change to what runs: who, what, when, and how it ended. Append-only: "
                                     "`.atl/audit/audit.jsonl`; `atl utils audit` reads and verifies it.")


@dg.sensor(name="audit", minimum_interval_seconds=AUDIT_SECONDS, default_status=dg.DefaultSensorStatus.RUNNING)
def audit_sensor(context: dg.SensorEvaluationContext, project: ProjectResource) -> dg.SensorResult:
    """Writes the audit record of each run that ended, and shows the trail's new records on `audit_log`."""
    watched = project.as_project()
    cursor = json.loads(context.cursor) if context.cursor else {"updated": 0.0, "offset": 0}
    if (size := audit.size(watched)) < cursor["offset"]:
        context.log.warning("the audit trail is shorter than when it was last read: `atl utils audit` says where")
        cursor["offset"] = size
    _record_ended_runs(context.instance, watched, cursor)
    new = list(audit.records(watched, offset=cursor["offset"]))
    if not new:
        return dg.SensorResult(cursor=json.dumps(cursor))
    cursor["offset"] = new[-1][0]
    head = audit.head(watched)
    audit.anchor_in_log_store(watched, head)
    observation = dg.AssetObservation(audit.ASSET, metadata={
        **audit_metadata([record for _, record in new]), **audit.head_metadata(head)})
    return dg.SensorResult(asset_events=[observation], cursor=json.dumps(cursor))


def _record_ended_runs(instance: dg.DagsterInstance, watched: Project, cursor: dict) -> None:
    """The record of each run that ended since the cursor, naming who launched it by the console's record of
    the launch (kept in the cursor until the run ends)."""
    launched = {**cursor.get("launched", {}),
                **audit.launches(record for _, record in audit.records(watched, offset=cursor["offset"]))}
    ended = instance.get_run_records(
        dg.RunsFilter(statuses=list(audit.OUTCOMES), updated_after=datetime.fromtimestamp(cursor["updated"], UTC)),
        limit=BATCH, order_by="update_timestamp", ascending=True)
    for record in ended:
        run = record.dagster_run
        if run.parent_run_id or run.tags.get(TRIGGER_TAG) != "cli":  # the CLI writes its own runs' records
            audit.append(watched, audit.run_record(instance, run, launched.pop(run.run_id, None)))
        cursor["updated"] = max(cursor["updated"], record.update_timestamp.timestamp())
    cursor["launched"] = dict(list(launched.items())[-LAUNCHES_KEPT:])
