"""The resources the stages are given, for tests that materialize stages directly."""

from __future__ import annotations

import time

from atl_pipeline.operations import audit
from atl_pipeline.orchestration.resources import ProjectResource, TargetResource, TerraformResource
from atl_pipeline.orchestration.run_outputs import RunOutputs
from atl_pipeline.project import Project


def stage_resources(project: Project, **timings: float) -> dict:
    """The definitions' resources on `project`, waiting as `timings` say (TargetResource's fields)."""
    return {"project": ProjectResource(root=str(project.root)), "terraform": TerraformResource(),
            "target": TargetResource(**timings), "io_manager": RunOutputs()}


def audit_record(project: Project, wanted, timeout: float = 90) -> dict:
    """The first record of the project's audit trail for which `wanted(record)` holds, once there is one
    (the `audit` sensor writes a run's record within a tick or two of its end)."""
    deadline = time.monotonic() + timeout
    while not (found := [record for _, record in audit.records(project) if wanted(record)]):
        assert time.monotonic() < deadline, f"no such audit record within {timeout:.0f} s"
        time.sleep(0.5)
    return found[0]
