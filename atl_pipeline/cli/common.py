"""What every `atl` command shares: exit codes, the usage error, and the internal error."""

from __future__ import annotations

import os
import re
import tempfile
import time
import traceback
from pathlib import Path

from atl_pipeline.config import Config, load_config
from atl_pipeline.config.model import duration_seconds
from atl_pipeline.errors import AtlError
from atl_pipeline.findings import ConfigError
from atl_pipeline.project import Project

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class UsageError(AtlError):
    """The command could not start: a missing file, a bad argument."""


def since_seconds(since: str | None) -> float | None:
    """`--since 90s|10m|2h|1d` as a time, or None."""
    if since is None:
        return None
    if not re.fullmatch(r"[1-9][0-9]{0,4}[smhd]", since):
        raise UsageError(f"--since {since!r}: write a whole number and a unit, such as 90s, 10m, 2h or 1d")
    return time.time() - duration_seconds(since)


def project_config(project: Project) -> Config:
    """The configuration of the project's domains.yml; a UsageError when it does not load."""
    try:
        return load_config(project.domains_file).config
    except (ConfigError, OSError) as error:
        raise UsageError(f"{project.domains_file.name} does not load: "
                         f"{str(error).splitlines()[0] if str(error) else type(error).__name__} "
                         "(`atl infra validate` says more)") from None


def save_traceback(error: BaseException) -> Path:
    """Write the traceback of an unexpected error to a file of its own, under the project's
    state when it can be written, else the temporary folder; return the file."""
    text = "".join(traceback.format_exception(error))
    try:
        folders = [Project.from_env().state_dir / "crashes", Path(tempfile.gettempdir())]
    except OSError:  # the working directory is gone
        folders = [Path(tempfile.gettempdir())]
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            descriptor, name = tempfile.mkstemp(prefix=time.strftime("atl-%Y%m%d-%H%M%S-"), suffix=".txt",
                                                dir=folder)
        except OSError:
            continue
        with os.fdopen(descriptor, "w") as stream:
            stream.write(text)
        return Path(name)
    raise error
