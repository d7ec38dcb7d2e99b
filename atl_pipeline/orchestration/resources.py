from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource

from atl_pipeline.project import Project


class ProjectResource(ConfigurableResource):
    """The project a run works on; empty `root` means ATL_PROJECT_DIR or the working directory."""

    root: str = ""

    def get(self) -> Project:
        return Project(Path(self.root).resolve()) if self.root else Project.from_env()
