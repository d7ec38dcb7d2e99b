"""Backups with restic (`backup:` in domains.yml): what recovers the platform, snapshotted, pruned by
the retention and checked; and restored.

A snapshot holds, under `.atl/` and relative to the project's folder, so that it restores into a
project folder anywhere: Terraform's state and backend settings (not its plans nor the cache of the
last apply, so the next run plans against the restored state), the Dagster instance (its SQLite
databases copied through SQLite's backup API, whole even while the daemon writes them), Caddy's
data (its CA and certificates), the deployment record, the incident log, the autoscaler's
decisions and the services' volumes.

Restoring stops what runs, puts the snapshot's files in place of the project's, and leaves the
rest to the next `atl infra up`, which converges on what the restored state declares.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from atl_pipeline import processes
from atl_pipeline.config.model import RESTIC_BACKENDS, Backup, Config
from atl_pipeline.errors import AtlError
from atl_pipeline.project import Project, state_files
from atl_pipeline.secrets import Redactor, resolve
from atl_pipeline.terraform.render import default_schema_name

LONG = 6 * 3600.0  # a backup, restore or check of much data
SHORT = 120.0  # reading the repository's index
DATABASES = "backup/databases"  # under .atl/: the instance's SQLite databases copied whole, the pg state dumped
STATE_DUMP = "terraform-state.sql"
SIDE_FILES = ("-wal", "-shm", "-journal")  # what SQLite keeps beside a database while it writes


class BackupError(AtlError):
    """restic failed, or the repository cannot be used; the message says what to do."""


class NoRepository(BackupError):
    """No restic repository where `backup.repository` says."""


@dataclass(frozen=True)
class Snapshot:
    id: str
    time: str
    hostname: str


@dataclass(frozen=True)
class BackupReport:
    snapshot: str
    files: int
    bytes: int  # what the snapshot holds
    added: int  # what it added to the repository
    seconds: float
    kept: int
    removed: int
    checked: str  # the share of the data `restic check` read


@dataclass(frozen=True)
class RestoreReport:
    snapshot: Snapshot
    restored: tuple[str, ...]  # the paths put back, under the project's folder
    stopped: bool  # something ran and was stopped first
    seconds: float
    state: str = ""  # with the pg backend: what became of the state in PostgreSQL


class Restic:
    """restic on one repository, its password given in the environment, never on a command line."""

    def __init__(self, project: Project, settings: Backup, environ: Mapping[str, str]):
        self.project, self.settings = project, settings
        self.repository = settings.repository
        if not self.repository.startswith(RESTIC_BACKENDS):
            folder = (project.root / self.repository).resolve()
            if folder.is_relative_to(project.state_dir.resolve()):
                raise BackupError(f"backup.repository {self.repository} is inside .atl/, which it backs up: "
                                  "choose a folder outside the project's state")
            self.repository = str(folder)
        self.env = {**environ, "RESTIC_PASSWORD": resolve(settings.password, environ),
                    "RESTIC_CACHE_DIR": str(project.state_dir / "backup" / "cache")}

    def run(self, *args: str, timeout: float = SHORT, cwd: Path | None = None) -> str:
        try:
            done = processes.run(["restic", "--repo", self.repository, "--quiet", *args], timeout=timeout, cwd=cwd,
                                 env=self.env, capture_output=True, text=True)
        except FileNotFoundError:
            raise BackupError("restic is not installed: `apt-get install restic` (`make run` does)") from None
        except processes.TimeoutExpired:
            raise BackupError(f"restic {args[0]} took longer than {timeout:.0f} s") from None
        if done.returncode != 0:
            raise self._error(args[0], done.stderr)
        return done.stdout

    def _error(self, command: str, stderr: str) -> BackupError:
        if "wrong password" in stderr:
            return BackupError(f"the password in {self.settings.password} does not open the repository "
                               f"{self.repository}: set the password it was created with")
        if "Is there a repository at the following location" in stderr:
            return NoRepository(f"there is no restic repository at {self.repository}: correct backup.repository, "
                                "or create it with a first `atl utils backup`")
        return BackupError(f"restic {command} failed: "
                           f"{stderr.strip().splitlines()[-1] if stderr.strip() else 'no message'}")

    def exists(self) -> bool:
        try:
            self.run("cat", "config")
        except NoRepository:
            return False
        return True

    def snapshots(self) -> list[Snapshot]:
        """Every snapshot, the oldest first."""
        listed = json.loads(self.run("snapshots", "--json") or "[]")
        return [Snapshot(s["short_id"], s["time"][:19] + "Z", s["hostname"]) for s in listed]

    def snapshot(self, wanted: str) -> Snapshot:
        snapshots = self.snapshots()
        if not snapshots:
            raise BackupError(f"the repository {self.repository} holds no snapshot yet: run `atl utils backup`")
        if wanted == "latest":
            return snapshots[-1]
        found = [s for s in snapshots if s.id.startswith(wanted.lower())] if len(wanted) >= 4 else []
        if len(found) != 1:
            raise BackupError(f"no single snapshot {wanted!r} in {self.repository}: `atl utils snapshots` lists them")
        return found[0]


def back_up(project: Project, config: Config, environ: Mapping[str, str]) -> BackupReport:
    """Snapshot, forget by the retention and prune, then check a sample of the data."""
    started = time.monotonic()
    settings, environment = config.backup, config.environment
    restic = Restic(project, settings, environ)
    if not restic.exists():
        restic.run("init")
    _copy_databases(project)
    if config.state.backend == "pg":
        _pg(config, environ, "pg_dump", "--schema", schema_of(config), "--no-owner", "--file",
            str(project.state_dir / DATABASES / STATE_DUMP))
    paths = [f".atl/{path}" for path in kept(environment) if (project.state_dir / path).exists()]
    excluded = [f"{project.state_dir}/dagster/**/*.db{suffix}" for suffix in ("", *SIDE_FILES)]
    excluded += [f"{project.state_dir}/terraform/{environment}/{name}" for name in ("plans", "last-apply.json")]
    output = restic.run("backup", "--json", "--host", project.root.name, *(f"--exclude={e}" for e in excluded),
                        *paths, timeout=LONG, cwd=project.root)
    summary = next(json.loads(line) for line in output.splitlines() if '"message_type":"summary"' in line)
    keep = settings.keep
    groups = json.loads(restic.run("forget", "--json", f"--keep-daily={keep.daily}", f"--keep-weekly={keep.weekly}",
                                   f"--keep-monthly={keep.monthly}") or "[]")
    removed = sum(len(group.get("remove") or []) for group in groups)
    if removed:
        restic.run("prune", timeout=LONG)
    restic.run("check", f"--read-data-subset={settings.check_subset}", timeout=LONG)
    return BackupReport(summary["snapshot_id"][:8], summary["total_files_processed"],
                        summary["total_bytes_processed"], summary["data_added"], time.monotonic() - started,
                        sum(len(group.get("keep") or []) for group in groups), removed, settings.check_subset)


def kept(environment: str) -> list[str]:
    """What a snapshot holds, under .atl/."""
    return [f"terraform/{environment}", "dagster", DATABASES, "runtime/caddy/data", "runtime/deployed.json",
            "volumes", "incidents.jsonl", "autoscale.json"]


def _copy_databases(project: Project) -> None:
    """Each SQLite database of the instance, copied whole (SQLite's online backup) under DATABASES."""
    copies = project.state_dir / DATABASES
    with state_files(project.state_dir):
        shutil.rmtree(copies, ignore_errors=True)
        copies.mkdir(parents=True)  # the pg state's dump goes here too
        for database in project.dagster_home.rglob("*.db"):
            copy = copies / database.relative_to(project.dagster_home)
            copy.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(database)) as source, closing(sqlite3.connect(copy)) as target:
                source.backup(target)


def restore(project: Project, config: Config, environ: Mapping[str, str], wanted: str,
            stop: Callable[[], bool]) -> RestoreReport:
    """Put the snapshot's files in place of the project's. The snapshot is read out in full before
    anything stops, so a wrong password or a missing repository or snapshot changes nothing. `stop`
    stops what runs and says whether anything did."""
    started = time.monotonic()
    restic = Restic(project, config.backup, environ)
    snapshot = restic.snapshot(wanted)
    scratch = project.state_dir / "backup" / "restoring"
    with state_files(project.state_dir):
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
    restic.run("restore", snapshot.id, "--target", str(scratch), timeout=LONG)
    with project.lock():
        stopped = stop()
        restored = _put_in_place(project, scratch / ".atl", config.environment)
        state = _restore_state(config, environ, scratch / ".atl" / DATABASES / STATE_DUMP)
    shutil.rmtree(scratch, ignore_errors=True)
    return RestoreReport(snapshot, restored, stopped, time.monotonic() - started, state)


def _put_in_place(project: Project, restored: Path, environment: str) -> tuple[str, ...]:
    """Each path the snapshot holds in place of the project's; then the instance's databases in theirs."""
    placed = []
    with state_files(project.state_dir):
        for path in kept(environment):
            if path == DATABASES or not (restored / path).exists():
                continue
            destination = project.state_dir / path
            if destination.is_dir():
                shutil.rmtree(destination)
            destination.unlink(missing_ok=True)
            destination.parent.mkdir(parents=True, exist_ok=True)
            (restored / path).rename(destination)
            placed.append(f".atl/{path}")
        copies = restored / DATABASES
        for database in copies.rglob("*.db"):
            destination = project.dagster_home / database.relative_to(copies)
            for suffix in SIDE_FILES:
                destination.with_name(destination.name + suffix).unlink(missing_ok=True)
            destination.parent.mkdir(parents=True, exist_ok=True)
            database.rename(destination)
    return tuple(placed)


def _restore_state(config: Config, environ: Mapping[str, str], dump: Path) -> str:
    """With the pg backend: the snapshot's state loaded into PostgreSQL when its schema is gone (the
    database was lost); a state still there is newer than any snapshot, and is kept."""
    if config.state.backend != "pg" or not dump.exists():
        return ""
    schema = schema_of(config)
    found = _pg(config, environ, "psql", "--no-psqlrc", "--tuples-only", "--no-align", "--command",
                f"SELECT count(*) FROM information_schema.schemata WHERE schema_name = '{schema}'")
    if found.strip() != "0":
        return f"kept the state in PostgreSQL: its schema {schema} is there"
    _pg(config, environ, "psql", "--no-psqlrc", "--set", "ON_ERROR_STOP=1", "--single-transaction", "--file",
        str(dump))
    return f"loaded the snapshot's state into PostgreSQL (schema {schema}, which was gone)"


def _pg(config: Config, environ: Mapping[str, str], *argv: str) -> str:
    """A PostgreSQL client on the state's database, its connection in libpq's environment, never on a
    command line."""
    url = resolve(config.state.conn_str, environ)
    try:
        done = processes.run(argv, timeout=LONG, env={**environ, **libpq_environment(url)}, capture_output=True,
                             text=True)
    except FileNotFoundError:
        raise BackupError(f"{argv[0]} is not installed: apt-get install postgresql-client") from None
    if done.returncode != 0:
        raise BackupError(Redactor([url])(f"{argv[0]} failed on the state's database: {done.stderr.strip()[-300:]}"))
    return done.stdout


def libpq_environment(url: str) -> dict[str, str]:
    """A `postgres://user:password@host:port/database?sslmode=...` URL as libpq's variables."""
    parts = urlsplit(url)
    values = {"PGHOST": parts.hostname, "PGPORT": str(parts.port or ""), "PGUSER": unquote(parts.username or ""),
              "PGPASSWORD": unquote(parts.password or ""), "PGDATABASE": unquote(parts.path.lstrip("/")),
              "PGSSLMODE": parse_qs(parts.query).get("sslmode", [""])[0]}
    return {name: value for name, value in values.items() if value}


def schema_of(config: Config) -> str:
    return config.state.schema_name or default_schema_name(config)
