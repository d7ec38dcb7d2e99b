"""Deploy the example on the local target, then measure a roll and the load balancer.

Prints: the seconds to roll one service of three replicas (the deployment stage, and the
whole pipeline run around it), the requests served and failed during that roll (a steady
load from another process), and requests/s with p50 / p99 latency at a few concurrency
levels through Caddy (HTTPS, keep-alive) beside the same load sent straight to one
replica (HTTP). Load generators are Python threads in a separate process: compare the
ratios, not the absolute figures.

    python bench/deploy.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from atl_pipeline.orchestration.runner import run_deploy  # noqa: E402
from atl_pipeline.project import Project  # noqa: E402
from atl_pipeline.runtime.local import deployed_runtime  # noqa: E402
from tests.conftest import copy_project  # noqa: E402
from tests.ports import service_ports  # noqa: E402
from tests.runtime_helpers import Load, wait_until_served  # noqa: E402

LOAD = REPO / "bench" / "load.py"
DOMAIN = "api.allthingslinux.org"
CONCURRENCY = (1, 8, 32)
SECONDS = 5


def throughput(address: str, ca: str, concurrency: int) -> dict:
    output = subprocess.run([sys.executable, str(LOAD), "throughput", address, DOMAIN, ca, str(concurrency),
                             str(SECONDS)], capture_output=True, text=True, check=True).stdout
    return json.loads(output)


def roll(project: Project) -> tuple[float, float, dict]:
    with Load(project, DOMAIN, project.root / "steady.json") as load:
        text = project.domains_file.read_text()
        project.domains_file.write_text(text.replace("backend-api:1.0.0", "backend-api:1.0.1"))
        stages = []
        start = time.perf_counter()
        assert run_deploy(project, on_stage=stages.append).success, stages
        total = time.perf_counter() - start
    deploy = next(stage.seconds for stage in stages if stage.stage == "service_deployment")
    return deploy, total, load.result


def main() -> None:
    temporary = Path(tempfile.mkdtemp(prefix="atl-bench-"))
    project = copy_project(temporary / "project")
    os.environ["ATL_PROJECT_DIR"] = str(project.root)
    try:
        assert run_deploy(project).success
        wait_until_served(project, DOMAIN)
        time.sleep(2)
        deploy, total, served = roll(project)
        print(f"{'roll of backend-api (3 replicas)':<36} {'stage s':>8} {'run s':>7} {'served':>7} {'failed':>7}")
        print(f"{'':<36} {deploy:>8.2f} {total:>7.2f} {served['ok']:>7} {served['failed']:>7}")
        print()
        lb = deployed_runtime(project).lb
        replica = f"127.0.0.1:{service_ports()[0] + 50}"  # the rolled release's first replica
        print(f"{'concurrency':>11} {'lb req/s':>9} {'lb p50 ms':>10} {'lb p99 ms':>10} {'direct req/s':>13} "
              f"{'direct p50':>11} {'direct p99':>11} {'lb/direct':>10}")
        for concurrency in CONCURRENCY:
            via_lb = throughput(f"{lb.address}:{lb.https_port}", str(lb.ca_cert), concurrency)
            direct = throughput(replica, "-", concurrency)
            print(f"{concurrency:>11} {via_lb['rps']:>9.0f} {via_lb['p50_ms']:>10.2f} {via_lb['p99_ms']:>10.2f} "
                  f"{direct['rps']:>13.0f} {direct['p50_ms']:>11.2f} {direct['p99_ms']:>11.2f} "
                  f"{via_lb['rps'] / direct['rps']:>10.2f}")
    finally:
        deployed_runtime(project).stop()
        shutil.rmtree(temporary, ignore_errors=True)


if __name__ == "__main__":
    main()
