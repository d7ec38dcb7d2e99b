"""Probe 10 / 100 / 1,000 endpoints through Caddy, as the health_check stage does.

Deploys one service (two sample replicas) behind the local Caddy for N domains (each with
its own certificate from Caddy's CA), then times `probe_domains` with one probe per
domain after its first answer (no settle window: certificates were issued during the
deployment). As in the stage, each domain's requests share one keep-alive connection: the
first opens it with a verified TLS handshake. 32 Python threads at a time. Columns:

- deploy s: the deployment, until every domain has answered once;
- probe s: the timed `probe_domains`;
- requests: the requests the prober sent, as its results count them (DomainHealth.requests);
- requests/s: requests / probe s;
- failed: domains whose probe failed.

    python bench/health.py [--markdown]
"""

from __future__ import annotations

import argparse
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
from bench.table import Table  # noqa: E402
from tests.conftest import copy_project  # noqa: E402
from tests.ports import free_port, service_ports  # noqa: E402

SIZES = (10, 100, 1_000)
PORT = service_ports()[0]
SERVICE = ServiceOutput(command=["python3", "-m", "atl_pipeline.sample_service", "--port", "{port}"],
                        cpu_millicores=500, health_path="/healthz", memory_bytes=512 * 2**20, port=PORT,
                        release="bench", replicas=2, standby_port=PORT + 50, ports=[PORT, PORT + 1],
                        standby_ports=[PORT + 50, PORT + 51])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print the table in Markdown")
    args = parser.parse_args()
    temporary = Path(tempfile.mkdtemp(prefix="atl-bench-"))
    project = copy_project(temporary / "project")
    os.environ["ATL_PROJECT_DIR"] = str(project.root)
    target = LocalTarget(http_port=free_port(), https_port=free_port(), admin_port=free_port())
    runtime = LocalRuntime(project, target)
    table = Table({"endpoints": 5, "deploy s": 6, "probe s": 5, "requests": 5, "requests/s": 5, "failed": 3},
                  args.markdown)
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
            requests = sum(result.requests for result in results)
            failed = sum(not result.ok for result in results)
            table.row(f"{size:,}", f"{deployed:.2f}", f"{seconds:.2f}", f"{requests:,}", f"{requests / seconds:,.0f}",
                      failed)
    finally:
        runtime.stop()
        shutil.rmtree(temporary, ignore_errors=True)


if __name__ == "__main__":
    main()
