"""Where a project keeps its configuration, its state and its Dagster instance."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from atl_pipeline import instance
from atl_pipeline.errors import AtlError

# what a file system answers when a disk is full (a write names no file), or when the project's files are not
# this user's to write: never a bug of ours
DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


class LockTimeout(AtlError):
    """Another run held the project's lock (or the deploy pool) for longer than ATL_LOCK_TIMEOUT."""

    transient = True


class StateError(AtlError):
    """A file of the project's state could not be written: the disk is full, or it belongs to another user."""


def lock_timeout() -> float:
    """Seconds to wait for another run's lock (ours, or Terraform's state lock): ATL_LOCK_TIMEOUT, default 600."""
    return float(os.environ.get("ATL_LOCK_TIMEOUT", "600"))


@dataclass(frozen=True)
class Project:
    """A project directory: domains.yml beside `.atl/`, which holds all state."""

    root: Path

    @classmethod
    def from_env(cls) -> Project:
        """The project named by ATL_PROJECT_DIR, else the current directory."""
        return cls(Path(os.environ.get("ATL_PROJECT_DIR") or os.getcwd()).resolve())

    @property
    def domains_file(self) -> Path:
        return self.root / "domains.yml"

    @property
    def state_dir(self) -> Path:
        return self.root / ".atl"

    @property
    def templates_dir(self) -> Path:
        return self.root / "terraform_templates"

    @property
    def dagster_home(self) -> Path:
        return self.state_dir / "dagster"

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the project's lock: one run at a time renders, plans, applies or deploys, writing the
        project's state. A file of it that cannot be written (StateError) is named, as is a lock held
        by another run for longer than ATL_LOCK_TIMEOUT (LockTimeout)."""
        with state_files(self.state_dir):
            self.state_dir.mkdir(parents=True, exist_ok=True)
            with (self.state_dir / "lock").open("w") as handle:
                timeout = lock_timeout()
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise LockTimeout(f"another run held {self.state_dir / 'lock'} for "
                                              f"{timeout:.0f} s") from None
                        time.sleep(0.1)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def ensure_instance(self) -> Path:
        """Create the Dagster instance's folder and its dagster.yaml; return the folder. InstanceError when
        its PostgreSQL setting cannot be used in this environment (the URL's variable unset, or not psycopg2's)."""
        with state_files(self.state_dir):
            storage = instance.write(self)
        if storage.postgres:
            storage.url()
        return self.dagster_home


@contextmanager
def state_files(folder: Path) -> Iterator[None]:
    """A full disk, or a file under `folder` (the project's state) its permissions refuse, raises StateError
    naming the file when the system does. Any other OSError, such as a file we expected and did not find, is
    a bug: it propagates."""
    try:
        yield
    except OSError as error:
        path = Path(os.fsdecode(error.filename)) if error.filename else None
        if not (error.errno in DISK_FULL or error.errno in NOT_WRITABLE and path and path.is_relative_to(folder)):
            raise
        raise StateError(f"cannot write {path or 'the project state'}: {error.strerror}. The project's state "
                         f"({folder}) must be writable by the user that runs atl, on a disk with free space") from None
