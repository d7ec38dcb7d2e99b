"""The project's Dagster instance: its dagster.yaml, and where it keeps runs, event logs and schedules.

By default that is SQLite files in the instance's folder, `.atl/dagster`. With a PostgreSQL
setting (`atl utils instance --postgres env:NAME`, or ATL_DAGSTER_PG=env:NAME, which wins) it is
one database, through dagster-postgres, that webservers and daemons on several machines share.
dagster.yaml only names the variable that holds the database's URL, never the URL.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from atl_pipeline.errors import AtlError
from atl_pipeline.files import replace_file, update_file
from atl_pipeline.secrets import SECRET_REF, SecretError, resolve

if TYPE_CHECKING:
    from atl_pipeline.project import Project

PG_SETTING = "ATL_DAGSTER_PG"
# SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, with which Dagster's storage does not work
PG_SCHEME = "postgresql+psycopg2"
PG_EXAMPLE = f"{PG_SCHEME}://USER:PASSWORD@HOST:5432/DATABASE"

DAGSTER_YAML = """\
# Written by atl-pipeline; edits are overwritten. The Dagster instance of this project.
telemetry:
  enabled: false
# One deploy at a time: every stage is in the pool atl-deploy, and a run that needs a pool
# waits in the queue while another run holds it.
concurrency:
  pools:
    granularity: run
    default_limit: 1
run_queue:
  dequeue_interval_seconds: 1
# A run whose worker crashed is retried from its failed stage; a stage that failed on its
# own is not (the stages' retry policies cover transient faults).
run_retries:
  enabled: true
  max_retries: 2
  retry_on_asset_or_op_failure: false
"""

POSTGRES_YAML = """\
# Runs, event logs and schedules in PostgreSQL: every process that opens this instance reads
# the database's URL from the environment variable {name}.
storage:
  postgres:
    postgres_url:
      env: {name}
"""


class InstanceError(AtlError):
    """The instance's storage setting cannot be used here."""


@dataclass(frozen=True)
class Storage:
    """Where the instance keeps its history: `postgres` is an `env:NAME` reference, or None for SQLite."""

    postgres: str | None
    source: str  # what chose it: ATL_DAGSTER_PG, the settings file, or "default"

    @property
    def kind(self) -> str:
        return "postgres" if self.postgres else "sqlite"

    @property
    def variable(self) -> str | None:
        """The environment variable that holds the database's URL."""
        return self.postgres.removeprefix("env:") if self.postgres else None

    def dagster_yaml(self) -> str:
        return DAGSTER_YAML + (POSTGRES_YAML.format(name=self.variable) if self.postgres else "")

    def url(self, environ: Mapping[str, str] = os.environ) -> str:
        """The database's URL, read from its variable; InstanceError when it is unset or not psycopg2's."""
        try:
            url = resolve(self.postgres, environ)
        except SecretError as error:
            raise InstanceError(str(error)) from None
        scheme = url.partition("://")[0] if "://" in url else "no scheme"
        if scheme != PG_SCHEME:
            raise InstanceError(f"{self.postgres} holds a {scheme} URL; Dagster's storage needs {PG_EXAMPLE} "
                                "(SQLAlchemy 2.1 reads postgresql:// as psycopg 3, which it cannot use)")
        return url


def settings_file(project: Project) -> Path:
    return project.state_dir / "instance.json"


def storage(project: Project, environ: Mapping[str, str] = os.environ) -> Storage:
    """The storage ATL_DAGSTER_PG names, else the settings file's, else SQLite."""
    if environ.get(PG_SETTING):
        return Storage(checked_reference(environ[PG_SETTING], PG_SETTING), PG_SETTING)
    path = settings_file(project)
    try:
        settings = json.loads(path.read_text())
    except FileNotFoundError:
        return Storage(None, "default")
    except ValueError:
        raise InstanceError(f"{path} is not JSON: set the storage again with `atl utils instance`") from None
    postgres = settings.get("postgres") if isinstance(settings, dict) else None
    return Storage(checked_reference(postgres, str(path)) if postgres else None, str(path))


def checked_reference(value: object, where: str) -> str:
    """An `env:NAME` reference; never echoes another value, which may be the URL and its password."""
    if not isinstance(value, str) or not SECRET_REF.fullmatch(value):
        raise InstanceError(f"{where}: name the database as env:NAME, with NAME holding its URL ({PG_EXAMPLE})")
    return value


def set_storage(project: Project, postgres: str | None) -> None:
    """Keep `postgres` (an `env:NAME` reference) as the project's setting, or remove it for SQLite."""
    path = settings_file(project)
    if postgres is None:
        path.unlink(missing_ok=True)
        return
    project.state_dir.mkdir(parents=True, exist_ok=True)
    replace_file(path, json.dumps({"postgres": checked_reference(postgres, "--postgres")}) + "\n")


def write(project: Project) -> Storage:
    """Create the instance's folder and write its dagster.yaml for the storage in use; return that storage."""
    chosen = storage(project)
    project.dagster_home.mkdir(parents=True, exist_ok=True)
    path = project.dagster_home / "dagster.yaml"
    update_file(path, chosen.dagster_yaml())
    return chosen

