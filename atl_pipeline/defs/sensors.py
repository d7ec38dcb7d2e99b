"""The sensors that deploy a change of domains.yml: pushed to git, or edited in place.

With ATL_GIT_REMOTE set when Dagster loads the code location, the git sensor runs by default
and the file sensor is off; without it, the other way round. Either can be switched in the UI.
The git sensor polls every ATL_GIT_POLL_SECONDS (5 by default; longer once a git hook or a
webhook tells the pipeline of each push at once, docs/operating.md).
"""

from __future__ import annotations

import os

import dagster as dg

from atl_pipeline.orchestration.sensors import DEFAULT_POLL_SECONDS, domains_file_changed, git_push


@dg.definitions
def sensors() -> dg.Definitions:
    watches_git = bool(os.environ.get("ATL_GIT_REMOTE"))
    return dg.Definitions(sensors=[git_push(running=watches_git, poll_seconds=_poll_seconds()),
                                   domains_file_changed(running=not watches_git)])


def _poll_seconds() -> int:
    value = os.environ.get("ATL_GIT_POLL_SECONDS", str(DEFAULT_POLL_SECONDS))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"ATL_GIT_POLL_SECONDS={value!r}: set it to a whole number of seconds, 1 or more")
    return int(value)
