"""The pipeline's own lines in the central log store: one per stage that ends, on every job's run."""

import dagster as dg

from atl_pipeline.operations.logs import pipeline_line


@dg.success_hook(required_resource_keys={"project"})
def stage_done(context: dg.HookContext) -> None:
    pipeline_line(context.resources.project.as_project(), f"run {context.run_id} ({context.job_name}) "
                  f"{context.op.name}: ok")


@dg.failure_hook(required_resource_keys={"project"})
def stage_failed(context: dg.HookContext) -> None:
    error = str(context.op_exception).strip().splitlines()[0] if context.op_exception else "failed"
    pipeline_line(context.resources.project.as_project(), f"run {context.run_id} ({context.job_name}) "
                  f"{context.op.name}: failed: {error}")


STAGE_LINES = {stage_done, stage_failed}
