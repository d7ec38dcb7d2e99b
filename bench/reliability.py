"""Faults injected into the running example stack, under a steady load through Caddy.

The example is deployed with Terraform's state in a throwaway PostgreSQL (as in
production), then each fault is injected `--repeat` times, each time under a new load.
Every column is measured:

- running after the fault: the replicas of backend-api that supervisord reports RUNNING
  once the fault has landed, "of" the replicas it has for their release; during a roll,
  for the release that serves ("old") and the one rolling in ("new"). A kill has landed
  when supervisord no longer reports the killed pid, Terraform's when its process is gone;
  a restart of PostgreSQL, when the server has stopped. Values that differ between
  repeats are joined by "or".
- service continued: no request of the load failed, in any repeat.
- served again s, median (max): from the fault to the load's first success after its last
  failed request (0 in a repeat that lost none); "-" when no request failed.
- restored s, median (max): from the fault to the stack serving what it should again.
  Killed replicas: every replica of the release RUNNING in supervisord, and each killed
  one has answered through Caddy (its replica number in the answer). Caddy: RUNNING
  again, and the domain served through it. A fault during a run: the run that converges
  (the same one, retried, or the next, started as soon as the failed one ends) has
  succeeded, and the domain answers through Caddy with the release it deployed.
- served, lost: requests of the load that succeeded and that failed, over the repeats.

Times start at the fault's own time.monotonic(), read as the signal is sent (as
PostgreSQL's stop is asked for); the load's process reads the same clock.

The load is one HTTPS request after another, each on a new connection, from a separate
process (bench/load.py steady). The goal: no request lost to a fault that leaves a
replica running, and every fault restored within 10 s.

    python bench/reliability.py [--repeat 3] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from atl_pipeline.config import load_config  # noqa: E402
from atl_pipeline.orchestration.runner import run_deploy, stages_until  # noqa: E402
from atl_pipeline.project import Project  # noqa: E402
from atl_pipeline.runtime.local import Group, deployed_runtime  # noqa: E402
from atl_pipeline.runtime.supervisor import alive  # noqa: E402
from atl_pipeline.terraform.stages import make_plan  # noqa: E402
from atl_pipeline.validation import validate  # noqa: E402
from bench.table import Table  # noqa: E402
from tests.conftest import copy_project  # noqa: E402
from tests.postgres import PostgresServer  # noqa: E402
from tests.runtime_helpers import (  # noqa: E402
    Load,
    kill_when_the_roll_starts,
    program_pid,
    through_lb,
    wait_until_served,
)
from tests.terraform_helpers import (  # noqa: E402
    BackgroundApply,
    use_pg,
    wait_for_terraform_in,
)

DOMAIN = "api.allthingslinux.org"
SERVICE = "backend-api"
DEPLOY = stages_until("service_deployment")
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """One injection of a fault; times are time.monotonic()."""

    running: str  # the column "running after the fault"
    fault_at: float
    restored_at: float


def wait_for(condition: Callable[[], T | None], timeout: float = 60) -> T:
    """`condition()`'s first truthy value, polled every 10 ms."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{condition.__qualname__} did not hold within {timeout:g} s")
        time.sleep(0.01)
    return value


def serving_replicas(project: Project) -> dict[int, str]:
    """backend-api's replicas: pid -> replica number, as the replica's answers name it."""
    (group,) = deployed_runtime(project).groups()[SERVICE]
    # process <group>_<n> runs the spec n.json, whose ATL_REPLICA is n
    return {p["pid"]: p["name"].rsplit("_", 1)[1] for p in group.processes}


def running_once_gone(project: Project, killed: set[int]) -> str:
    """Once supervisord reports none of the `killed` pids, how many of backend-api's replicas it
    reports RUNNING, of each release's replicas (the serving one first)."""
    runtime = deployed_runtime(project)
    serving = runtime.deployed()["services"][SERVICE]["group"]

    def landed() -> list[dict] | None:
        processes = runtime.supervisor.processes()
        return None if killed & {p["pid"] for p in processes} else processes

    replicas = [p for p in wait_for(landed) if of_service(p)]
    groups = sorted({p["group"] for p in replicas}, key=lambda group: group != serving)
    counts = [f"{sum(p['statename'] == 'RUNNING' for p in replicas if p['group'] == group)} of "
              f"{sum(p['group'] == group for p in replicas)}" for group in groups]
    return counts[0] if len(counts) == 1 else f"{counts[0]} old, {counts[1]} new"


def of_service(process: dict) -> bool:
    group = Group.parse(process["group"], [])
    return group is not None and group.service == SERVICE


def replicas_back(project: Project, numbers: set[str]) -> float:
    """When every replica of the serving release is RUNNING and each of `numbers` has answered
    through Caddy."""
    runtime = deployed_runtime(project)
    release = runtime.deployed()["services"][SERVICE]["release"]
    unheard = set(numbers)

    def back() -> float | None:
        answer = through_lb(project, DOMAIN)
        if answer.ok and (body := json.loads(answer.body))["release"] == release:
            unheard.discard(body["replica"])
        (group,) = runtime.groups()[SERVICE]
        running = all(p["statename"] == "RUNNING" for p in group.processes)
        return time.monotonic() if running and not unheard else None

    return wait_for(back)


def caddy_back(project: Project) -> float:
    """When supervisord reports Caddy RUNNING and the domain is served through it."""
    supervisor = deployed_runtime(project).supervisor

    def back() -> float | None:
        running = any(p["name"] == "caddy" and p["statename"] == "RUNNING" for p in supervisor.processes())
        return time.monotonic() if running and through_lb(project, DOMAIN).ok else None

    return wait_for(back)


def served_by_the_deployed_release(project: Project) -> float:
    """When the domain answers through Caddy with the release the last deployment recorded."""
    release = deployed_runtime(project).deployed()["services"][SERVICE]["release"]

    def served() -> float | None:
        answer = through_lb(project, DOMAIN)
        return time.monotonic() if answer.ok and json.loads(answer.body)["release"] == release else None

    return wait_for(served)


def kill_replicas(project: Project, count: int | None) -> Outcome:
    """SIGKILL `count` of backend-api's replicas (None: every one)."""
    victims = dict(list(serving_replicas(project).items())[:count])
    fault_at = time.monotonic()
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    running = running_once_gone(project, set(victims))
    return Outcome(running, fault_at, replicas_back(project, set(victims.values())))


def kill_caddy(project: Project) -> Outcome:
    caddy = program_pid(project, "caddy")
    fault_at = time.monotonic()
    os.kill(caddy, signal.SIGKILL)
    running = running_once_gone(project, {caddy})
    return Outcome(running, fault_at, caddy_back(project))


def new_release(project: Project) -> None:
    """backend-api's image from 1.0.0 to 1.0.1, or back."""
    text = project.domains_file.read_text()
    old, new = ("1.0.0", "1.0.1") if f"{SERVICE}:1.0.0" in text else ("1.0.1", "1.0.0")
    project.domains_file.write_text(text.replace(f"{SERVICE}:{old}", f"{SERVICE}:{new}"))


def a_roll_with_a_kill(project: Project, victim: int | None, succeeds: bool) -> Outcome:
    """A roll to a new release during which `victim` (None: a new replica) is SIGKILLed; when the
    roll fails, the next run rolls again."""
    new_release(project)
    killer = kill_when_the_roll_starts(project, victim)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(lambda: running_once_gone(project, {wait_for(lambda: killer.killed)}))
        assert run_deploy(project, stages=DEPLOY).success is succeeds
    killer.join()
    if not succeeds:
        assert run_deploy(project, stages=DEPLOY).success
    return Outcome(running.result(), killer.killed_at, served_by_the_deployed_release(project))


def kill_a_serving_replica_mid_roll(project: Project) -> Outcome:
    return a_roll_with_a_kill(project, next(iter(serving_replicas(project))), succeeds=True)


def kill_a_new_replica_mid_roll(project: Project) -> Outcome:
    return a_roll_with_a_kill(project, None, succeeds=False)  # the health gate refuses the release


def toggle_monitoring(project: Project) -> None:
    """A Terraform change that leaves what serves alone: the first domain's monitoring switched."""
    text = project.domains_file.read_text()
    old, new = ("monitoring: true", "monitoring: false")
    if text.index(old) > text.find(new) >= 0:
        old, new = new, old
    project.domains_file.write_text(text.replace(old, new, 1))


def kill_terraform_during_apply(project: Project) -> Outcome:
    toggle_monitoring(project)
    plan = make_plan(project, validate(load_config(project.domains_file)), "interrupted")
    interrupted = BackgroundApply(project, plan)
    terraform = wait_for_terraform_in(plan.workdir)
    fault_at = time.monotonic()
    os.kill(terraform, signal.SIGKILL)
    wait_for(lambda: not alive(terraform))
    running = running_once_gone(project, set())
    interrupted.join()
    assert run_deploy(project, stages=DEPLOY).success
    return Outcome(running, fault_at, served_by_the_deployed_release(project))


def restart_postgresql_during_apply(project: Project, postgres: PostgresServer) -> Outcome:
    """The state backend restarts under `terraform apply`; the stage retries (2 s backoff)."""
    toggle_monitoring(project)

    def restart_when_apply_starts() -> tuple[float, str]:
        wait_for_terraform_in(project.state_dir / "terraform" / "production", "apply")
        fault_at = time.monotonic()
        postgres.pause()
        running = running_once_gone(project, set())
        postgres.resume()
        return fault_at, running

    with ThreadPoolExecutor(1) as pool:
        restart = pool.submit(restart_when_apply_starts)
        assert run_deploy(project, stages=DEPLOY).success
    fault_at, running = restart.result()
    return Outcome(running, fault_at, served_by_the_deployed_release(project))


def faults(postgres: PostgresServer) -> dict[str, Callable[[Project], Outcome]]:
    """Each fault by name: it injects itself and waits until the stack is restored."""
    return {
        "one replica SIGKILLed": partial(kill_replicas, count=1),
        "a serving replica killed mid-roll": kill_a_serving_replica_mid_roll,
        "a new replica killed while starting": kill_a_new_replica_mid_roll,
        "Terraform killed during apply": kill_terraform_during_apply,
        "PostgreSQL restarted during apply": partial(restart_postgresql_during_apply, postgres=postgres),
        "Caddy SIGKILLed": kill_caddy,
        "every replica SIGKILLed": partial(kill_replicas, count=None),
    }


def row(fault: str, outcomes: list[Outcome], loads: list[dict]) -> list[str]:
    """The table's cells for one fault, from its repeats and the load of each."""
    lost = sum(load["failed"] for load in loads)
    served_again = [max(load["served_again_at"], default=outcome.fault_at) - outcome.fault_at
                    for outcome, load in zip(outcomes, loads, strict=True)]
    restored = [outcome.restored_at - outcome.fault_at for outcome in outcomes]
    return [fault, " or ".join(sorted({outcome.running for outcome in outcomes})), "yes" if lost == 0 else "no",
            spread(served_again) if lost else "-", spread(restored), f"{sum(load['ok'] for load in loads):,}",
            f"{lost:,}"]


def spread(seconds: list[float]) -> str:
    return f"{statistics.median(seconds):.2f} ({max(seconds):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--markdown", action="store_true", help="print the table in Markdown")
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
        table = Table({"fault": 35, "running after the fault": 22, "service continued": 3,
                       "served again s, median (max)": 11, "restored s, median (max)": 11, "served": 6, "lost": 4},
                      args.markdown)
        for number, (name, inject) in enumerate(faults(postgres).items()):
            outcomes, loads = [], []
            for attempt in range(args.repeat):
                time.sleep(2)  # Caddy's passive health memory of the last fault has passed
                with Load(project, DOMAIN, temporary / f"load-{number}-{attempt}.json") as load:
                    outcomes.append(inject(project))
                loads.append(load.result)
            table.row(*row(name, outcomes, loads))
    finally:
        deployed_runtime(project).stop()
        postgres.stop()
        shutil.rmtree(temporary, ignore_errors=True)


if __name__ == "__main__":
    main()
