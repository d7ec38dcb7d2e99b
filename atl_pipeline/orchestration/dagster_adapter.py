"""What atl relies on in Dagster that no public API states, in one place.

The tags Dagster puts on runs by how they started, the hidden tag that marks a run using a
pool, and the run an IO manager loads an input for. Tests pin each to the installed Dagster
version (test_run_control.py the pool's, test_triggers.py a re-execution's, test_e2e_dagster.py
the UI's and automation's, test_run_outputs.py the input's run), so an upgrade that changes one
fails there, not in a deploy.
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, InputContext, RunsFilter

PARENT_RUN_TAG = "dagster/parent_run_id"  # a re-execution: the run it re-executes (it inherits its tags)
BACKFILL_TAG = "dagster/backfill"
AUTOMATION_TAG = "dagster/from_automation_condition"
SCHEDULE_TAG = "dagster/schedule_name"
SENSOR_TAG = "dagster/sensor_name"
# a sensor launches a run key once: its daemon looks for a run with both tags, whoever launched it
RUN_KEY_TAG = "dagster/run_key"
RETRY_NUMBER_TAG = "dagster/retry_number"  # a run the daemon launched again by `run_retries`
FROM_UI_TAG = "dagster/from_ui"  # added by the UI to whatever it launches


def runs_holding_pool(instance: DagsterInstance, pool: str, statuses: Sequence[DagsterRunStatus]) -> list[DagsterRun]:
    """The runs in `statuses` whose plan has a step in `pool` (a hidden tag Dagster sets)."""
    return list(instance.get_runs(RunsFilter(statuses=list(statuses), tags={f".dagster/pool/{pool}": "true"})))
OUTSIDE_PLAN = "__EPHEMERAL_RUN_ID"  # the producing run Dagster names for an input from an asset outside the run


def producing_run(context: InputContext) -> str | None:
    """The run that produced an input: this run, or the run a re-execution reuses the step of; None for an
    asset outside the run (the upstream of a stage materialized alone)."""
    run_id = context.upstream_output.run_id
    return None if run_id == OUTSIDE_PLAN else run_id


def run_of_input(context: InputContext) -> DagsterRun:
    """The run loading an input."""
    return context.step_context.dagster_run
