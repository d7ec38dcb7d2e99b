"""The Dagster code location: `dg dev` (through workspace.yaml) loads `defs`.

Every stage, job, sensor, schedule and resource is in atl_pipeline/defs/, one module per
stage group; each stage is a thin call into a plain module of atl_pipeline.
"""

from __future__ import annotations

import functools
from pathlib import Path

import dagster as dg

from atl_pipeline.defs.backup import BACKUP_JOB
from atl_pipeline.defs.drift import DRIFT_JOB
from atl_pipeline.orchestration.stage import DEPLOY_JOB


@functools.cache
def loaded() -> dg.Definitions:
    """The definitions, once per process (the CLI and the tests use them too)."""
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)


@dg.definitions
def defs() -> dg.Definitions:
    return loaded()


def deploy_job() -> dg.JobDefinition:
    """The deploy job, for `dagster.reconstructable` (the CLI runs it in-process)."""
    return loaded().resolve_job_def(DEPLOY_JOB)


def drift_job() -> dg.JobDefinition:
    """The drift job, for `dagster.reconstructable`."""
    return loaded().resolve_job_def(DRIFT_JOB)


def backup_job() -> dg.JobDefinition:
    """The backup job, for `dagster.reconstructable`."""
    return loaded().resolve_job_def(BACKUP_JOB)
