"""Where a project keeps its configuration, its state and its Dagster instance."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from atl_pipeline import instance


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
        """Hold the project's lock: one run at a time renders, plans, applies or deploys."""
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
                        raise TimeoutError(f"another run held {self.state_dir / 'lock'} for "
                                           f"{timeout:.0f} s") from None
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def ensure_instance(self) -> Path:
        """Create the Dagster instance's folder and its dagster.yaml; return the folder. InstanceError when
        its PostgreSQL setting cannot be used in this environment (the URL's variable unset, or not psycopg2's)."""
        storage = instance.write(self)
        if storage.postgres:
            storage.url()
        return self.dagster_home
