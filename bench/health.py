"""Probe 10 / 100 / 1,000 endpoints through Caddy, as the health_check stage does.

Deploys one service (two sample replicas) behind the local Caddy for N domains (each with
its own certificate from Caddy's CA), then times `probe_domains` with one probe per
domain after a settled first answer: seconds and requests per second. As in the stage,
each domain's requests share one keep-alive connection: the first opens it with a
verified TLS handshake. 32 Python threads at a time.

    python bench/health.py
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from atl_pipeline.config.model import LocalTarget  # noqa: E402
from atl_pipeline.health import probe_domains  # noqa: E402
from atl_pipeline.runtime.local import LocalRuntime  # noqa: E402
from atl_pipeline.targets.outputs import DomainOutput, ServiceOutput  # noqa: E402
from tests.conftest import copy_project  # noqa: E402
from tests.ports import free_port, service_ports  # noqa: E402

SIZES = (10, 100, 1_000)
PORT = service_ports()[0]
SERVICE = ServiceOutput(command=["python3", "-m", "atl_pipeline.sample_service", "--port", "{port}"],
                        cpu_millicores=500, health_path="/healthz", memory_bytes=512 * 2**20, port=PORT,
                        release="bench", replicas=2, standby_port=PORT + 50, ports=[PORT, PORT + 1],
                        standby_ports=[PORT + 50, PORT + 51])


def main() -> None:
    temporary = Path(tempfile.mkdtemp(prefix="atl-bench-"))
    project = copy_project(temporary / "project")
    os.environ["ATL_PROJECT_DIR"] = str(project.root)
    target = LocalTarget(http_port=free_port(), https_port=free_port(), admin_port=free_port())
    runtime = LocalRuntime(project, target)
    print(f"{'endpoints':>9} {'deploy s':>9} {'probe s':>8} {'probes/s':>9} {'failed':>7}")
    try:
        for size in SIZES:
            domains = {f"d{i}.bench.allthingslinux.org": DomainOutput(
                cpu_millicores=500, memory_bytes=512 * 2**20, monitoring=False, replicas=2, service="api", ssl=True,
                url=f"https://d{i}.bench.allthingslinux.org/") for i in range(size)}
            start = time.perf_counter()
            runtime.deploy({"api": SERVICE}, domains)
            probe_domains(runtime.lb.frontend, domains, {"api": SERVICE}, probes=0, settle=60)  # certificates issued
            deployed = time.perf_counter() - start
            start = time.perf_counter()
            results = probe_domains(runtime.lb.frontend, domains, {"api": SERVICE}, probes=1, settle=0)
            seconds = time.perf_counter() - start
            failed = sum(not result.ok for result in results)
            print(f"{size:>9,} {deployed:>9.2f} {seconds:>8.2f} {2 * size / seconds:>9.0f} {failed:>7}")
    finally:
        runtime.stop()
        shutil.rmtree(temporary, ignore_errors=True)


if __name__ == "__main__":
    main()
