"""How a run started, from its tags: the truthful `atl/trigger` of every run."""

from __future__ import annotations

from collections.abc import Mapping

from atl_pipeline.orchestration.dagster_adapter import (
    AUTOMATION_TAG,
    BACKFILL_TAG,
    FROM_UI_TAG,
    PARENT_RUN_TAG,
    SCHEDULE_TAG,
    SENSOR_TAG,
)

TRIGGER_TAG = "atl/trigger"


def trigger_of(tags: Mapping[str, str], parent_run_id: str | None = None) -> str:
    """`re-execution of <run>`, `backfill`, `automation`, `schedule`, a sensor's own (`git`, `file`),
    `ui`, `cli`, or `api` (launched by code through Dagster's API). A re-execution (a run with a
    parent, which the UI also tags) inherits its parent's tags, so it is told first."""
    if parent := parent_run_id or tags.get(PARENT_RUN_TAG):
        return f"re-execution of {parent}"
    for tag, trigger in ((BACKFILL_TAG, "backfill"), (AUTOMATION_TAG, "automation"), (SCHEDULE_TAG, "schedule")):
        if tag in tags:
            return trigger
    if SENSOR_TAG in tags:
        return tags.get(TRIGGER_TAG, "sensor")
    if FROM_UI_TAG in tags:
        return "ui"
    return tags.get(TRIGGER_TAG, "api")
