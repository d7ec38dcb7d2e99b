"""The sensors that deploy a change of domains.yml: pushed to git, or edited in place.

With ATL_GIT_REMOTE set when Dagster loads the code location, the git sensor runs by default
and the file sensor is off; without it, the other way round. Either can be switched in the UI.
"""

from __future__ import annotations

import os

import dagster as dg

from atl_pipeline.orchestration.sensors import domains_file_changed, git_push


@dg.definitions
def sensors() -> dg.Definitions:
    watches_git = bool(os.environ.get("ATL_GIT_REMOTE"))
    return dg.Definitions(sensors=[git_push(running=watches_git), domains_file_changed(running=not watches_git)])
