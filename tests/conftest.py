from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import settings

from atl_pipeline.project import Project
from tests.guard import sitecustomize as guard

REPO = Path(__file__).resolve().parent.parent

SEED = """\
services:
  backend-api:
    command: [python3, -m, http.server, "{port}"]
    port: 8080
# The seed's example, as the infrastructure overview writes it
domains:
  - name: "api.allthingslinux.org"
    service: "backend-api"
    ssl: true
    monitoring: true
    replicas: 3
    resources:
      cpu: "500m"
      memory: "512Mi"
"""


@pytest.hookimpl(tryfirst=True)  # before the tmp_path plugin reads the option
def pytest_configure(config: pytest.Config) -> None:
    _short_worker_basetemp(config)
    _guard_the_fast_tier(config)


def _short_worker_basetemp(config: pytest.Config) -> None:
    """An xdist worker's temporary folders under `pytest-N/0`, not `pytest-N/popen-gw0`: a project's
    supervisord socket (`<tmp_path>/project/.atl/runtime/sv.sock`, to which supervisord adds `.<pid>`
    while it binds) must fit the 107 bytes of a unix socket path."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and config.option.basetemp:
        given = Path(config.option.basetemp)
        if given.name == f"popen-{worker}":
            config.option.basetemp = str(given.with_name(worker.removeprefix("gw")))


def _guard_the_fast_tier(config: pytest.Config) -> None:
    """The fast tier (`-m "not slow"`, make test-fast) refuses real processes: a test that starts
    a real tool, or whose child process does, fails and must be marked slow (tests/guard/)."""
    if "not slow" not in (config.getoption("markexpr") or ""):
        return
    descriptor, log = tempfile.mkstemp(prefix="atl-real-processes-")
    os.close(descriptor)
    os.environ[guard.LOG] = log  # this process's own (each xdist worker is configured on its own)
    guard_folder = str(Path(guard.__file__).parent)
    if guard_folder not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [guard_folder, os.environ.get("PYTHONPATH")]))
    guard.watch()


def pytest_unconfigure(config: pytest.Config) -> None:
    if "not slow" in (config.getoption("markexpr") or "") and (log := os.environ.pop(guard.LOG, None)):
        Path(log).unlink(missing_ok=True)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test`: -n N --dist loadgroup), a module whose tests share a
    module-scoped fixture (a deployed stack, a console...) runs in one worker, in file order:
    the fixture is set up once, and tests that change it come after those that look at it."""
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        if fixtures and any(definition.scope == "module" for definitions in fixtures.name2fixturedefs.values()
                            for definition in definitions):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """In the fast tier, the phase (setup, call or teardown) that started a real tool fails."""
    report = yield
    log = os.environ.get(guard.LOG)
    if log and (started := Path(log).read_text().splitlines()):
        Path(log).write_text("")
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} ({report.when}) started {', '.join(sorted(set(started)))} under "
                           f"-m 'not slow': mark it @pytest.mark.slow, it runs real processes\n\n{report.longrepr}")
    return report


@pytest.fixture
def write(tmp_path: Path):
    """Write a (dedented) configuration file and return its path."""

    def write(text: str | bytes, name: str = "domains.yml") -> Path:
        path = tmp_path / name
        if isinstance(text, str):
            path.write_text(textwrap.dedent(text))
        else:
            path.write_bytes(text)
        return path

    return write


def copy_project(root: Path) -> Project:
    """A project directory at `root` with copies of the repository's domains.yml and templates,
    its load balancer on free ports and its services away from the example's ports."""
    from tests.runtime_helpers import on_test_ports

    root.mkdir(parents=True)
    shutil.copy(REPO / "domains.yml", root / "domains.yml")
    shutil.copytree(REPO / "terraform_templates", root / "terraform_templates")
    project = Project(root)
    on_test_ports(project)
    return project


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A copy of the example project, as ATL_PROJECT_DIR and the working directory; whatever
    it ran is killed afterwards."""
    project = copy_project(tmp_path / "project")
    monkeypatch.setenv("ATL_PROJECT_DIR", str(project.root))
    monkeypatch.chdir(project.root)
    yield project
    kill_stack(project)


def kill_stack(project: Project) -> None:
    """SIGKILL supervisord, then everything it ran (what it left running too, if a test killed it):
    a test's teardown, 3 to 4 s faster than a graceful stop (which `atl infra down` does, and
    tests/test_runtime.py checks)."""
    from atl_pipeline.runtime.local import deployed_runtime

    supervisor = deployed_runtime(project).supervisor
    if supervisor.is_running():
        with contextlib.suppress(ProcessLookupError):  # first, so it restarts nothing
            os.kill(supervisor.rpc.getPID(), signal.SIGKILL)
    supervisor.stop_strays(grace=0)


@pytest.fixture
def hang_guard():
    """Fails a test that hangs (a guard against unbounded work, not a timing assertion)."""

    def expired(signum, frame):
        raise TimeoutError("still running after 60 s: the work is not bounded")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server on loopback for the whole session."""
    from tests.postgres import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


# Hypothesis's budget: `ci` (the default) about a minute in all; HYPOTHESIS_PROFILE=fast for the edit loop
settings.register_profile("ci", max_examples=1000, deadline=None)
settings.register_profile("fast", max_examples=50, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
