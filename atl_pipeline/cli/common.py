"""What every `atl` command shares: exit codes, the usage error, and the internal error."""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from pathlib import Path

from atl_pipeline.errors import AtlError
from atl_pipeline.project import Project

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class UsageError(AtlError):
    """The command could not start: a missing file, a bad argument."""


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
