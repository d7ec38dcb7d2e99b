"""The local stack's security: its listeners on loopback only, its control sockets its
owner's alone, no web page able to drive Caddy, Prometheus or the blackbox exporter, and no
value of domains.yml ever reaching a shell."""

from __future__ import annotations

import ast
import contextlib
import json
import os
from pathlib import Path

import pytest
import requests

from atl_pipeline.monitoring.alertmanager import Alertmanager
from atl_pipeline.orchestration.runner import run_deploy, stages_until
from atl_pipeline.project import Project
from atl_pipeline.runtime.local import deployed_runtime
from tests.conftest import REPO, copy_project, kill_stack
from tests.runtime_helpers import wait_until_served

API = "api.allthingslinux.org"
SHELL_WORDS = ["$(touch pwned-1)", "`touch pwned-2`", "; touch pwned-3", "| touch pwned-4", "&& touch pwned-5",
               "> pwned-6", "%(ENV_HOME)s", "$HOME", "\\", "'\"", "*", "\n[program:x]"]


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The example deployed through every stage once, for the tests that look at it, then for
    those that change it (in file order)."""
    project = copy_project(tmp_path_factory.mktemp("security") / "project")
    assert run_deploy(project).success
    yield project
    kill_stack(project)


@pytest.mark.slow
def test_every_process_of_the_stack_listens_on_loopback_only(monitored: Project):
    """Caddy (its admin API included), Prometheus, the blackbox exporter, Alertmanager (no cluster
    port) and every replica."""
    project = monitored
    runtime = deployed_runtime(project)
    pids = {p["pid"] for p in runtime.supervisor.processes() if p["pid"]}
    listening = listening_sockets(pids)

    assert {name for name, _, _ in listening} >= {"caddy", "prometheus", "prometheus-blac", "prometheus-aler",
                                                  "python3"}
    assert {address for _, address, _ in listening} == {"127.0.0.1"}, listening
    assert (project.state_dir / "runtime").stat().st_mode & 0o077 == 0  # supervisord's socket is in here


def listening_sockets(pids: set[int]) -> list[tuple[str, str, int]]:
    """(process name, address, port) of each TCP socket in LISTEN that these processes hold."""
    inodes: dict[str, str] = {}
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):  # a process that ended meanwhile listens on nothing
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd) if fd.is_symlink() else ""
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = name
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                found.append((inodes[inode], *_address(local)))
    return found


def _address(hex_address: str) -> tuple[str, int]:
    host, port = hex_address.split(":")
    if len(host) == 8:  # IPv4, little-endian
        return ".".join(str(int(host[i:i + 2], 16)) for i in (6, 4, 2, 0)), int(port, 16)
    return ("::1" if host == "00000000000000000000000001000000" else f"ipv6:{host}"), int(port, 16)


@pytest.mark.slow
def test_caddys_admin_api_refuses_a_foreign_origin(monitored: Project):
    """A web page the operator visits cannot reconfigure the load balancer (DNS rebinding, CSRF)."""
    admin = deployed_runtime(monitored).lb.admin_url
    assert requests.get(f"{admin}/config/", timeout=5).ok
    rebound = requests.get(f"{admin}/config/", headers={"Host": "attacker.example"}, timeout=5)
    forged = requests.post(f"{admin}/load", json={}, headers={"Origin": "http://attacker.example"}, timeout=5)
    assert (rebound.status_code, forged.status_code) == (403, 403), (rebound.text, forged.text)
    assert wait_until_served(monitored, API).ok


@pytest.mark.slow
def test_no_web_page_can_stop_change_or_read_prometheus(monitored: Project):
    """No HTTP lifecycle API (a page could post /-/quit or /-/reload), no admin API (a page could
    delete series), and no other origin may read its API."""
    prometheus = f"http://127.0.0.1:{deployed_runtime(monitored).target.prometheus_port}"
    assert requests.post(f"{prometheus}/-/quit", timeout=5).status_code == 403
    assert requests.post(f"{prometheus}/-/reload", timeout=5).status_code == 403
    deleted = requests.post(f"{prometheus}/api/v1/admin/tsdb/delete_series", params={"match[]": "up"}, timeout=5)
    assert deleted.json()["error"] == "admin APIs disabled"
    query = requests.get(f"{prometheus}/api/v1/query", params={"query": "up"},
                         headers={"Origin": "http://attacker.example"}, timeout=5)
    assert query.ok and "Access-Control-Allow-Origin" not in query.headers


@pytest.mark.slow
def test_no_web_page_can_use_the_blackbox_exporter(monitored: Project):
    """It has no origin check: a page could make it reload, or probe a URL of the page's choosing
    (and read the probe's log from a name rebound to 127.0.0.1). It asks for a password Prometheus has."""
    target = deployed_runtime(monitored).target
    exporter = f"http://127.0.0.1:{target.blackbox_port}"
    page = {"Origin": "http://attacker.example"}

    reload = requests.post(f"{exporter}/-/reload", headers=page, timeout=5)
    probe = requests.get(f"{exporter}/probe", params={"target": "http://127.0.0.1:1/", "module": API, "debug": "true"},
                         headers=page, timeout=5)
    rebound = requests.get(f"{exporter}/config", headers={"Host": f"attacker.example:{target.blackbox_port}"},
                           timeout=5)

    assert (reload.status_code, probe.status_code, rebound.status_code) == (401, 401, 401)
    targets = requests.get(f"http://127.0.0.1:{target.prometheus_port}/api/v1/targets", timeout=5).json()
    probes = [t for t in targets["data"]["activeTargets"] if t["labels"]["job"].startswith("blackbox-")]
    assert probes and {t["health"] for t in probes} == {"up"}


@pytest.mark.slow
def test_no_web_page_can_use_alertmanager(monitored: Project):
    """It allows requests from any origin: a page could read the alerts, or silence them. It asks for
    a password that Prometheus and the pipeline have."""
    target = deployed_runtime(monitored).target
    manager = f"http://127.0.0.1:{target.alertmanager_port}"
    page = {"Origin": "http://attacker.example"}
    silence = {"matchers": [{"name": "domain", "value": API, "isRegex": False}], "createdBy": "page", "comment": "",
               "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z"}

    read = requests.get(f"{manager}/api/v2/alerts", headers=page, timeout=5)
    silenced = requests.post(f"{manager}/api/v2/silences", json=silence, headers=page, timeout=5)

    assert (read.status_code, silenced.status_code) == (401, 401)
    assert isinstance(Alertmanager.of(monitored).active(), list)  # the pipeline has the password


@pytest.mark.slow
def test_the_monitoring_stage_reloads_prometheus_with_a_signal(monitored: Project):
    runtime = deployed_runtime(monitored)
    pid = next(p["pid"] for p in runtime.supervisor.processes() if p["name"] == "prometheus")
    text = monitored.domains_file.read_text()
    monitored.domains_file.write_text(text.replace("services:", "prometheus:\n  scrape_interval: 3s\nservices:", 1))

    stages = []
    assert run_deploy(monitored, on_stage=stages.append).success

    assert "configuration reloaded" in next(s.detail for s in stages if s.stage == "monitoring")
    assert pid == next(p["pid"] for p in runtime.supervisor.processes() if p["name"] == "prometheus")
    prometheus = f"http://127.0.0.1:{runtime.target.prometheus_port}"
    config = requests.get(f"{prometheus}/api/v1/status/config", timeout=5).json()["data"]["yaml"]
    assert "scrape_interval: 3s" in config  # the new configuration, in the process that was running


@pytest.mark.slow
def test_no_value_of_domains_yml_reaches_a_shell(monitored: Project):
    """Shell syntax in a service's command reaches the replica as its literal arguments."""
    project = monitored
    text = project.domains_file.read_text()
    project.domains_file.write_text(text.replace(
        'command: [python3, -m, atl_pipeline.sample_service, --port, "{port}"]',
        f'command: [python3, -m, atl_pipeline.sample_service, --port, "{{port}}", --unhealthy-for-host, '
        f'{json.dumps(" ".join(SHELL_WORDS))}]', 1))

    assert run_deploy(project, stages=stages_until("health_check")).success

    replica = next(p for p in deployed_runtime(project).supervisor.processes() if "backend-api" in p["group"])
    argv = Path(f"/proc/{replica['pid']}/cmdline").read_bytes().split(b"\0")[:-1]
    assert argv[-1].decode() == " ".join(SHELL_WORDS)
    assert not [path for path in project.root.rglob("pwned*")]


def test_only_the_processes_module_starts_programs():
    """Every other module of the package goes through atl_pipeline/processes.py, which takes an
    argument list and never a shell: none imports subprocess, pty or multiprocessing, nor calls
    (or imports) os.system, os.popen, os.exec*, os.spawn*, os.posix_spawn* or os.fork*."""
    found = []
    for path in (REPO / "atl_pipeline").rglob("*.py"):
        if path.name == "processes.py" and path.parent.name == "atl_pipeline":
            continue
        launches = process_launches(path.read_text())
        if path.name == "checkov_server.py":  # runs in Checkov's own Python, apart: it forks itself, no program
            launches = [(line, what) for line, what in launches if what != "os.fork"]
        found += [f"{path.relative_to(REPO)}:{line}: {what}" for line, what in launches]
    assert found == []


def process_launches(source: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names if a.name.split(".")[0] in LAUNCHERS]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in LAUNCHERS or node.module == "asyncio.subprocess":
                found.append((node.lineno, f"from {node.module} import ..."))
            elif node.module == "os":
                found += [(node.lineno, f"from os import {a.name}") for a in node.names if _launches(a.name)]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
            if _launches(node.attr):
                found.append((node.lineno, f"os.{node.attr}"))
        elif isinstance(node, ast.Attribute) and node.attr.startswith("create_subprocess"):
            found.append((node.lineno, ast.unparse(node)))
    return found


LAUNCHERS = {"subprocess", "pty", "multiprocessing"}


def _launches(name: str) -> bool:
    return name in ("system", "popen", "fork", "forkpty") or name.startswith(("exec", "spawn", "posix_spawn"))


@pytest.mark.parametrize("launch", [
    "import subprocess\nsubprocess.getoutput('x')", "from subprocess import run", "from os import system",
    "import os\nos.execvp('sh', ['sh', '-c', 'x'])", "import os\nos.posix_spawnp('sh', ['sh'], {})",
    "import asyncio\nasyncio.create_subprocess_shell('x')", "import pty\npty.spawn('sh')",
    "from multiprocessing import Process",
])
def test_the_check_sees_each_way_of_starting_a_program(launch):
    assert process_launches(launch)
