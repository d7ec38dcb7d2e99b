"""Helpers for tests of the local runtime with real supervisord, Caddy and sample services."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from atl_pipeline.project import Project
from atl_pipeline.runtime import http
from atl_pipeline.runtime.local import LocalRuntime, deployed_runtime
from tests.ports import free_port, service_ports

LOAD = Path(__file__).resolve().parent.parent / "bench" / "load.py"


def on_test_ports(project: Project) -> None:
    """Move the example's load balancer and services to ports reserved for this test process."""
    text = project.domains_file.read_text()
    moves = [(f"{name}: {port}", f"{name}: {free_port()}")
             for name, port in (("http_port", 8000), ("https_port", 8443), ("admin_port", 2019),
                                ("prometheus_port", 9090), ("blackbox_port", 9115),
                                ("alertmanager_port", 9093))]
    api, web = service_ports()
    for old, new in [*moves, ("port: 8100", f"port: {api}"), ("port: 8200", f"port: {web}")]:
        assert old in text, old
        text = text.replace(old, new)
    project.domains_file.write_text(text)


def clash_ports(project: Project) -> int:
    """Move website's ports into backend-api's (its standby half): a finding of the rules. Returns
    the port they both use."""
    api, web = service_ports()
    text = project.domains_file.read_text()
    assert f"port: {web}" in text
    project.domains_file.write_text(text.replace(f"port: {web}", f"port: {api + 50}"))
    return api + 50


def through_lb(project: Project, domain: str, path: str = "/", tls: bool = True) -> http.Response:
    runtime = deployed_runtime(project)
    lb = runtime.lb
    return http.get((lb.address, lb.https_port if tls else lb.http_port), domain, path, tls=tls, ca=lb.ca_cert)


def wait_until_served(project: Project, domain: str, timeout: float = 30) -> http.Response:
    """Caddy obtains certificates just after a load: wait until the domain answers over TLS."""
    deadline = time.monotonic() + timeout
    while not (response := through_lb(project, domain)).ok:
        if time.monotonic() > deadline:
            raise AssertionError(f"{domain} not served: {response.error or response.status}")
        time.sleep(0.1)
    return response


class Load:
    """bench/load.py's load in its own process, against one domain, for the length of a `with`:
    `steady` (one request after another, each on a new connection) or `held` (clients on
    keep-alive connections whose requests are each held open for a while)."""

    def __init__(self, project: Project, domain: str, out: Path, mode: str = "steady", *options: str):
        self.project, self.domain, self.out, self.mode, self.options = project, domain, out, mode, options

    def __enter__(self) -> Load:
        lb = deployed_runtime(self.project).lb
        self.process = subprocess.Popen([sys.executable, str(LOAD), self.mode, f"{lb.address}:{lb.https_port}",
                                         self.domain, str(lb.ca_cert), str(self.out), *self.options])
        while not Path(str(self.out) + ".started").exists():
            time.sleep(0.02)
        time.sleep(0.5)
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.5)
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self.result = json.loads(self.out.read_text())


def replica_pids(project: Project) -> dict[str, list[int]]:
    runtime = deployed_runtime(project)
    return {service: [p["pid"] for g in groups for p in g.processes] for service, groups in runtime.groups().items()}


def process_limits(pid: int) -> tuple[int, int]:
    """A process's address-space limit (bytes) and nice value."""
    limits = Path(f"/proc/{pid}/limits").read_text()
    address_space = next(line for line in limits.splitlines() if line.startswith("Max address space"))
    return int(address_space.split()[3]), os.getpriority(os.PRIO_PROCESS, pid)


class kill_when_the_roll_starts(threading.Thread):
    """SIGKILL `victim` (or the new release's first replica, None) once the new release has a process;
    `killed` is then the pid killed, `killed_at` the time.monotonic() of the kill."""

    def __init__(self, project: Project, victim: int | None):
        super().__init__()
        self.runtime, self.victim, self.killed, self.killed_at, self.state = (
            deployed_runtime(project), victim, None, 0.0, "")
        self.serving = {p["group"] for p in self.runtime.supervisor.processes()}
        self.start()

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            new = [p for p in self.runtime.supervisor.processes()
                   if p["group"] not in self.serving and p["pid"] and p["statename"] in ("STARTING", "RUNNING")]
            if new:
                victim, self.state = self.victim or new[0]["pid"], new[0]["statename"]
                self.killed_at = time.monotonic()
                os.kill(victim, signal.SIGKILL)
                self.killed = victim  # last: a thread that sees it set also sees killed_at
                return
            time.sleep(0.01)

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        assert self.killed, "the roll never started a new replica"


def program_pid(project: Project, name: str) -> int:
    """The pid of the supervisord program `name` (caddy, say)."""
    return next(p["pid"] for p in deployed_runtime(project).supervisor.processes() if p["name"] == name)


def drift_from_record(runtime: LocalRuntime) -> list[str]:
    """How what runs differs from what the last deployment recorded."""
    services = {name: spec.output() for name, spec in runtime.deployed_services().items()}
    return runtime.drift(services, runtime.deployed_domains())


def plant_certificate(project: Project, domain: str, days: int) -> None:
    """Put in Caddy's storage a certificate for `domain` from its own CA that expires in `days`, and
    restart Caddy, which serves it: with its whole lifetime that short, Caddy's renewal (at a third of
    the lifetime left) leaves it alone, as it would a certificate it failed to renew."""
    runtime = deployed_runtime(project)
    authority = runtime.lb.data_dir / "pki" / "authorities" / "local"
    stored = runtime.lb.data_dir / "certificates" / "local" / domain
    request, extensions = stored / "planted.csr", stored / "planted.ext"
    extensions.write_text(f"subjectAltName=DNS:{domain}\nextendedKeyUsage=serverAuth\n")
    for argv in (["openssl", "req", "-new", "-key", stored / f"{domain}.key", "-subj", f"/CN={domain}",
                  "-out", request],
                 ["openssl", "x509", "-req", "-in", request, "-CA", authority / "intermediate.crt",
                  "-CAkey", authority / "intermediate.key", "-set_serial", str(int(time.time() * 1000)),
                  "-days", str(days), "-extfile", extensions, "-out", stored / "planted.crt"]):
        subprocess.run([str(arg) for arg in argv], check=True, capture_output=True)
    chain = (stored / "planted.crt").read_text() + (authority / "intermediate.crt").read_text()
    (stored / f"{domain}.crt").write_text(chain)
    for name in ("planted.csr", "planted.ext", "planted.crt"):
        (stored / name).unlink()
    runtime.restart_caddy()


def wait_for(what: str, found, timeout: float = 120, why=lambda: ""):
    """`found()`'s value once it is truthy, asked every half second; fails after `timeout` seconds
    saying what was waited for (and `why()`)."""
    deadline = time.monotonic() + timeout
    while not (value := found()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s. {why()}"
        time.sleep(0.5)
    return value
