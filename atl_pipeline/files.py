"""Writing a file whole: a reader sees the old content or the new one, never a part."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def replace_file(path: Path, text: str, mode: int | None = None) -> None:
    """Write `text` beside `path`, then rename it over `path` (atomic on one filesystem); with `mode`,
    the file has that mode before it has any content."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    if mode is not None:
        temporary.touch(mode=mode)
        temporary.chmod(mode)  # touch's mode passes through the umask
    temporary.write_text(text)
    os.replace(temporary, path)


def update_file(path: Path, text: str, mode: int | None = None) -> bool:
    """`replace_file` unless the file holds `text` already; True when it wrote."""
    if path.exists() and path.read_text() == text:
        return False
    replace_file(path, text, mode)
    return True


def private_folder() -> Path:
    """A folder of this user's alone for unix sockets, whose paths must fit in 107 bytes (a project's
    folder may be deeper): `<tmp>/atl-<uid>`, as tmux keeps its own. OSError when someone else's
    folder, or one others may write in, is in the way."""
    folder = Path(tempfile.gettempdir()) / f"atl-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    found = folder.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
        raise OSError(f"{folder} is not a folder of this user's alone: remove it")
    return folder
