"""What every stage shares: its group, pool and retries, how its errors and metadata reach
Dagster, and how its run started."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    Backoff,
    DagsterError,
    Failure,
    MetadataValue,
    RetryPolicy,
)

from atl_pipeline.errors import AtlError
from atl_pipeline.orchestration.triggers import TRIGGER_TAG, trigger_of
from atl_pipeline.report import Link, Markdown

GROUP = "deploy"
DEPLOY_JOB = "deploy"
POOL = "atl-deploy"  # limit 1, whole runs (the instance's dagster.yaml): one deploy at a time
APPROVE_DESTROY_TAG = "atl/approve-destroy"
APPROVAL_CHECK = "destroy_approved"
POLICY_CHECK = "policy"
# for the stages that converge when run again; terraform_apply too: Terraform refuses a saved
# plan once the state changed (StalePlan, not retried), so a retry applies nothing twice
RETRY = RetryPolicy(max_retries=3, delay=2, backoff=Backoff.EXPONENTIAL)
# errors whose message tells the operator what to do: they fail the stage without a traceback (any other
# exception is a bug, and fails it with its traceback); those marked `transient` are retried
STAGE_ERRORS = (AtlError,)
SHOWN = 10  # findings a failure's message lists before it counts the rest


@contextmanager
def stage_errors() -> Iterator[None]:
    """A stage error becomes a Dagster failure whose message is the operator's next step."""
    try:
        yield
    except STAGE_ERRORS as error:
        raise Failure(str(error), allow_retries=error.transient) from None


def stop_on_failed_checks(*results: AssetCheckResult) -> None:
    """A failed blocking check fails its stage in the check's own words, so the run page's first screen
    says what to fix (Dagster's own failure says only that a blocking check failed)."""
    if failed := [result for result in results if not result.passed]:
        raise Failure("\n\n".join(result.description or result.check_name for result in failed),
                      allow_retries=False)


def first_lines(items: Sequence[object], metadata_key: str) -> str:
    """The first SHOWN items a line each, and how many more the stage's metadata lists."""
    more = len(items) - SHOWN
    return "\n".join([*map(str, items[:SHOWN]), *([f"... and {more} more: see `{metadata_key}`"] if more > 0 else [])])


def metadata(context: AssetExecutionContext, values: Mapping[str, object]) -> dict:
    """A stage's metadata from report.py, as Dagster shows it, with how its run started."""
    return {"trigger": recorded_trigger(context), **to_metadata(values)}


def to_metadata(values: Mapping[str, object]) -> dict:
    """Metadata from report.py, as Dagster shows it."""
    return {key: _value(value) for key, value in values.items()}


def recorded_trigger(context: AssetExecutionContext | AssetCheckExecutionContext) -> str:
    """How the run started, told truthfully: set as its `atl/trigger` tag when Dagster's own tags
    say otherwise (a re-execution inherits its parent's; a run from the asset graph has none)."""
    try:
        run = context.run
    except DagsterError:  # invoked directly, as a function: there is no run
        return "direct invocation"
    trigger = trigger_of(run.tags, run.parent_run_id)
    if run.tags.get(TRIGGER_TAG) != trigger:
        context.instance.add_run_tags(run.run_id, {TRIGGER_TAG: trigger})
    return trigger


def _value(value: object) -> object:
    if isinstance(value, Markdown):
        return MetadataValue.md(value)
    if isinstance(value, Link):
        return MetadataValue.url(value)
    if isinstance(value, Path):
        return MetadataValue.path(str(value))
    if isinstance(value, list | dict):
        return MetadataValue.json(value)
    return value
