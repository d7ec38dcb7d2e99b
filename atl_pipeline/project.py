"""Where a project keeps its configuration, its state and its Dagster instance."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DAGSTER_YAML = """\
# Written by atl-pipeline; edits are overwritten. The Dagster instance of this project.
telemetry:
  enabled: false
"""


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

    def ensure_instance(self) -> Path:
        """Create the Dagster instance directory and its dagster.yaml; return the directory."""
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        settings = self.dagster_home / "dagster.yaml"
        if not settings.exists() or settings.read_text() != DAGSTER_YAML:
            settings.write_text(DAGSTER_YAML)
        return self.dagster_home
