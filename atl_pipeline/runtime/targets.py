"""The runtime of a configuration's target."""

from __future__ import annotations

from atl_pipeline.config import Config
from atl_pipeline.project import Project
from atl_pipeline.runtime.hcloud import HcloudRuntime
from atl_pipeline.runtime.local import LocalRuntime
from atl_pipeline.runtime.rolling import Runtime


def target_runtime(project: Project, config: Config, outputs: dict | None = None) -> Runtime:
    """The runtime that deploys `config`'s target; on hcloud, over the servers of Terraform's
    `outputs` (without them, over those the last deployment reached)."""
    if config.target.kind == "hcloud":
        return HcloudRuntime.of(project, config, outputs)
    return LocalRuntime(project, config.target)
