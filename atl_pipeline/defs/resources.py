"""The resources every stage and sensor is given, and the executor: one process per run."""

from __future__ import annotations

import dagster as dg

from atl_pipeline.orchestration.resources import ProjectResource, TargetResource, TerraformResource
from atl_pipeline.orchestration.run_outputs import RunOutputs


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={"project": ProjectResource(), "terraform": TerraformResource(), "target": TargetResource(),
                   "io_manager": RunOutputs()},
        executor=dg.in_process_executor)
