"""The resources the stages are given, for tests that materialize stages directly."""

from __future__ import annotations

from dagster import FilesystemIOManager

from atl_pipeline.orchestration.resources import ProjectResource, TargetResource, TerraformResource
from atl_pipeline.project import Project


def stage_resources(project: Project, **timings: float) -> dict:
    """The definitions' resources on `project`, waiting as `timings` say (TargetResource's fields)."""
    return {"project": ProjectResource(root=str(project.root)), "terraform": TerraformResource(),
            "target": TargetResource(**timings), "io_manager": FilesystemIOManager()}
