"""The audit trail in the UI: the `audit` sensor writes the record of each run that ends (the CLI
writes its own runs'), and shows each new record of the trail (the console's requests too) as an
observation of `audit_log` (atl_pipeline.operations.audit)."""

import json
from datetime import UTC, datetime

import dagster as dg

from atl_pipeline.operations import audit
from atl_pipeline.orchestration.resources import ProjectResource
from atl_pipeline.orchestration.triggers import TRIGGER_TAG
from atl_pipeline.report import audit_metadata

AUDIT_SECONDS = 5
BATCH = 200

audit_log = dg.AssetSpec("audit_log", group_name="operations", kinds={"audit"},
                         description="Every change to what runs: who, what, when, and how it ended. Append-only: "
                                     "`.atl/audit/audit.jsonl`; `atl utils audit` reads and verifies it.")


@dg.sensor(name="audit", minimum_interval_seconds=AUDIT_SECONDS, default_status=dg.DefaultSensorStatus.RUNNING)
def audit_sensor(context: dg.SensorEvaluationContext, project: ProjectResource) -> dg.SensorResult:
    """Writes the audit record of each run that ended, and shows the trail's new records on `audit_log`."""
    watched = project.as_project()
    cursor = json.loads(context.cursor) if context.cursor else {"updated": 0.0, "offset": 0}
    ended = context.instance.get_run_records(
        dg.RunsFilter(statuses=list(audit.OUTCOMES), updated_after=datetime.fromtimestamp(cursor["updated"], UTC)),
        limit=BATCH, order_by="update_timestamp", ascending=True)
    for record in ended:
        run = record.dagster_run
        if run.parent_run_id or run.tags.get(TRIGGER_TAG) != "cli":  # the CLI writes its own runs' records
            audit.append(watched, audit.run_record(context.instance, run))
        cursor["updated"] = max(cursor["updated"], record.update_timestamp.timestamp())
    new = list(audit.records(watched, offset=cursor["offset"]))
    if new:
        cursor["offset"] = new[-1][0]
    events = [dg.AssetObservation("audit_log", metadata=audit_metadata([record for _, record in new]))] if new else []
    return dg.SensorResult(asset_events=events, cursor=json.dumps(cursor))

