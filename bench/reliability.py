"""Faults injected into the running example stack, under a steady load through Caddy.

The example is deployed with Terraform's state in a throwaway PostgreSQL (as in
production), then each fault is injected `--repeat` times. Columns:

- alive: replicas of the loaded service (backend-api, 3) that the fault left running;
- continued: no request failed while the fault lasted;
- recover s (median, max): from the fault to recovery. For a killed process, until
  supervisord runs it again and the domain is served; for a fault during a run, the run
  that converges (the same one, retried, or the next);
- served, lost: requests of the load, summed over the repeats.

The load is one HTTPS request after another, each on a new connection, from a separate
process (bench/load.py steady). The goal: no request lost to a fault that leaves one
replica alive, and recovery within 10 s.

    python bench/reliability.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from atl_pipeline.config import load_config  # noqa: E402
from atl_pipeline.orchestration.runner import run_deploy, stages_until  # noqa: E402
from atl_pipeline.project import Project  # noqa: E402
from atl_pipeline.runtime.local import deployed_runtime  # noqa: E402
from atl_pipeline.terraform.stages import make_plan  # noqa: E402
from atl_pipeline.validation import validate  # noqa: E402
from tests.conftest import copy_project  # noqa: E402
from tests.postgres import PostgresServer  # noqa: E402
from tests.runtime_helpers import (  # noqa: E402
    Load,
    kill_when_the_roll_starts,
    program_pid,
    replica_pids,
    through_lb,
    wait_until_served,
)
from tests.terraform_helpers import (  # noqa: E402
    BackgroundApply,
    kill_terraform_in,
    use_pg,
    wait_for_terraform_in,
)

DOMAIN = "api.allthingslinux.org"
SERVICE = "backend-api"
DEPLOY = stages_until("service_deployment")


def until(condition: Callable[[], bool], timeout: float = 60) -> float:
    """Seconds until `condition` holds."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"the stack did not recover within {timeout:g} s")
        time.sleep(0.02)
    return time.monotonic() - start


def serving(project: Project) -> bool:
    return through_lb(project, DOMAIN).ok


def replicas_running(project: Project, gone: set[int]) -> Callable[[], bool]:
    """The service's replicas all RUNNING again, none of them a killed one, and the domain served."""
    def check() -> bool:
        processes = [p for p in deployed_runtime(project).supervisor.processes() if SERVICE in p["group"]]
        return (all(p["statename"] == "RUNNING" and p["pid"] not in gone for p in processes)
                and serving(project))
    return check


def kill_one_replica(project: Project) -> tuple[int, float]:
    victim = replica_pids(project)[SERVICE][0]
    os.kill(victim, signal.SIGKILL)
    return 2, until(replicas_running(project, {victim}))


def kill_every_replica(project: Project) -> tuple[int, float]:
    victims = set(replica_pids(project)[SERVICE])
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    return 0, until(replicas_running(project, victims))


def kill_caddy(project: Project) -> tuple[int, float]:
    caddy = program_pid(project, "caddy")
    os.kill(caddy, signal.SIGKILL)
    return 3, until(lambda: serving(project))


def new_release(project: Project) -> None:
    """backend-api's image from 1.0.0 to 1.0.1, or back."""
    text = project.domains_file.read_text()
    old, new = ("1.0.0", "1.0.1") if f"{SERVICE}:1.0.0" in text else ("1.0.1", "1.0.0")
    project.domains_file.write_text(text.replace(f"{SERVICE}:{old}", f"{SERVICE}:{new}"))


def kill_a_serving_replica_mid_roll(project: Project) -> tuple[int, float]:
    new_release(project)
    killer = kill_when_the_roll_starts(project, replica_pids(project)[SERVICE][0])
    start = time.monotonic()
    assert run_deploy(project, stages=DEPLOY).success
    killer.join()
    return 2, time.monotonic() - start


def kill_a_new_replica_mid_roll(project: Project) -> tuple[int, float]:
    new_release(project)
    killer = kill_when_the_roll_starts(project, None)
    assert not run_deploy(project, stages=DEPLOY).success  # the gate refuses it; the old release serves
    killer.join()
    start = time.monotonic()
    assert run_deploy(project, stages=DEPLOY).success
    return 3, time.monotonic() - start


def toggle_monitoring(project: Project) -> None:
    """A Terraform change that leaves what serves alone: the first domain's monitoring switched."""
    text = project.domains_file.read_text()
    old, new = ("monitoring: true", "monitoring: false")
    if text.index(old) > text.find(new) >= 0:
        old, new = new, old
    project.domains_file.write_text(text.replace(old, new, 1))


def kill_terraform_during_apply(project: Project) -> tuple[int, float]:
    toggle_monitoring(project)
    plan = make_plan(project, validate(load_config(project.domains_file)), "interrupted")
    interrupted = BackgroundApply(project, plan)
    kill_terraform_in(plan.workdir)
    interrupted.join()
    start = time.monotonic()
    assert run_deploy(project, stages=DEPLOY).success
    return 3, time.monotonic() - start


def restart_postgresql_during_apply(project: Project, postgres: PostgresServer) -> tuple[int, float]:
    """The state backend restarts under `terraform apply`; the stage retries (2 s backoff)."""
    toggle_monitoring(project)

    def restart_when_apply_starts() -> None:
        wait_for_terraform_in(project.state_dir / "terraform" / "production", "apply")
        postgres.restart()

    restarter = threading.Thread(target=restart_when_apply_starts)
    restarter.start()
    start = time.monotonic()
    assert run_deploy(project, stages=DEPLOY).success
    restarter.join()
    return 3, time.monotonic() - start


def faults(postgres: PostgresServer) -> dict[str, Callable[[Project], tuple[int, float]]]:
    """Each fault by name: it injects itself, waits for recovery, and returns (replicas alive, seconds)."""
    return {
        "one replica SIGKILLed": kill_one_replica,
        "a serving replica killed mid-roll": kill_a_serving_replica_mid_roll,
        "a new replica killed while starting": kill_a_new_replica_mid_roll,
        "terraform killed during apply": kill_terraform_during_apply,
        "postgresql restarted during apply": partial(restart_postgresql_during_apply, postgres=postgres),
        "caddy SIGKILLed": kill_caddy,
        "every replica SIGKILLed": kill_every_replica,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    temporary = Path(tempfile.mkdtemp(prefix="atl-bench-"))
    project = copy_project(temporary / "project")
    os.environ["ATL_PROJECT_DIR"] = str(project.root)
    postgres = PostgresServer().start()  # Terraform's state in PostgreSQL, as in production
    os.environ["ATL_BENCH_PG_CONN"] = postgres.url
    use_pg(project, "ATL_BENCH_PG_CONN")
    try:
        assert run_deploy(project, stages=DEPLOY).success
        wait_until_served(project, DOMAIN)
        print(f"{'fault':<38} {'alive':>5} {'continued':>9} {'recover s':>10} {'max s':>6} {'served':>7} "
              f"{'lost':>5}")
        for name, inject in faults(postgres).items():
            recoveries, served, lost, alive = [], 0, 0, 0
            for attempt in range(args.repeat):
                time.sleep(2)  # Caddy's passive health memory of the last fault has passed
                with Load(project, DOMAIN, temporary / f"load-{attempt}.json") as load:
                    alive, seconds = inject(project)
                recoveries.append(seconds)
                served, lost = served + load.result["ok"], lost + load.result["failed"]
            print(f"{name:<38} {alive:>5} {'yes' if lost == 0 else 'no':>9} {statistics.median(recoveries):>10.2f} "
                  f"{max(recoveries):>6.2f} {served:>7} {lost:>5}")
    finally:
        deployed_runtime(project).stop()
        postgres.stop()
        shutil.rmtree(temporary, ignore_errors=True)


if __name__ == "__main__":
    main()
