"""Sensors that start a deploy when domains.yml changes."""

from __future__ import annotations

import hashlib
import json

from dagster import AssetKey, DefaultSensorStatus, RunRequest, SensorEvaluationContext, SkipReason, sensor
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from atl_pipeline.project import Project


def domains_file_sensor(job: UnresolvedAssetJobDefinition):
    """A dev box without git: deploy whenever the file's content changes.

    The run key is `<change number>:<sha256>`: a bare content hash would never deploy a
    file reverted to an earlier content, because Dagster launches a run key only once.
    Before its first run the sensor takes the content last materialized (by `atl infra up`,
    say) as already seen, so it does not deploy the same file twice.
    """

    @sensor(job=job, minimum_interval_seconds=5, default_status=DefaultSensorStatus.RUNNING)
    def domains_file_changed(context: SensorEvaluationContext):
        path = Project.from_env().domains_file
        try:
            with path.open("rb") as stream:
                digest = hashlib.file_digest(stream, "sha256").hexdigest()
        except FileNotFoundError:
            return SkipReason(f"{path} does not exist")
        last = json.loads(context.cursor) if context.cursor else {"sha256": _last_deployed(context), "change": 0}
        if digest == last["sha256"]:
            return SkipReason(f"{path.name} unchanged (sha256 {digest[:12]})")
        change = last["change"] + 1
        context.update_cursor(json.dumps({"sha256": digest, "change": change}))
        return RunRequest(
            run_key=f"{change}:{digest}",
            run_config={"ops": {"domain_config": {"config": {"path": str(path)}}}},
            tags={"atl/trigger": "file", "atl/sha256": digest},
        )

    return domains_file_changed


def _last_deployed(context: SensorEvaluationContext) -> str | None:
    event = context.instance.get_latest_materialization_event(AssetKey("domain_config"))
    sha256 = event.asset_materialization.metadata.get("sha256") if event and event.asset_materialization else None
    return sha256.value if sha256 else None
