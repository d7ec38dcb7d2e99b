"""Auto-scaling within the bounds declared in domains.yml (`services.<name>.autoscale`).

Git holds the bounds; the count moves within them. A deploy declares, for each service that
scales, the count the autoscaler asked for in this run, else the count that runs now, else
where the service starts, always within its bounds (`declared_counts`), so a deploy from git
keeps the current count and clamps it to new bounds. The count is decided the way Kubernetes'
horizontal autoscaler decides it (`recommend`, then `stabilized`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

from atl_pipeline.config.model import Autoscale, Config, duration_seconds
from atl_pipeline.errors import AtlError
from atl_pipeline.files import replace_file

TOLERANCE = 0.1  # a ratio of observed to target within 10% of 1 changes nothing
DECISIONS = "autoscale.json"  # under the project's state folder: each service's last scaling decision


def declared_counts(config: Config, running: Mapping[str, int], asked: Mapping[str, int]) -> dict[str, int]:
    """The replicas a deploy declares for each service that scales: asked, else running, else its start;
    within its bounds."""
    counts = {}
    for name, workload in config.workloads().items():
        if bounds := workload.autoscale:
            counts[name] = within(bounds, asked.get(name, running.get(name, workload.replicas)))
    return counts


def within(bounds: Autoscale, count: int) -> int:
    return min(max(count, bounds.min), bounds.max)


def recommend(bounds: Autoscale, current: int, observed_per_replica: float, target_per_replica: float) -> int:
    """desired = ceil(current x observed / target), unchanged within the tolerance, within the bounds."""
    ratio = observed_per_replica / target_per_replica
    if abs(ratio - 1) <= TOLERANCE:
        return within(bounds, current)
    return within(bounds, math.ceil(current * ratio))


def stabilized(bounds: Autoscale, current: int, history: Sequence[tuple[float, int]], now: float) -> int:
    """The count to scale to, given the recommendations of the last ticks (time, count), the newest
    last: up at once to the newest; down only to the highest of those within `scale_down_after`, so
    a count is removed only once the metric has stayed low that long."""
    newest = history[-1][1]
    if newest >= current:
        return newest
    window = duration_seconds(bounds.scale_down_after)
    if history[0][0] > now - window:  # not watched that long yet: low for less than the window
        return current
    return min(current, max(count for at, count in history if now - at <= window))


class MetricsUnavailable(AtlError):
    """Prometheus did not answer: no count changes on missing data."""

    transient = True


@dataclass(frozen=True)
class Step:
    """What the autoscaler found for one service on one tick."""

    service: str
    current: int
    desired: int
    metric: str  # the target's name and what one replica carries now, against the target
    history: tuple[tuple[float, int], ...]  # the recommendations the scale-down window looks at


def observe(prometheus: str, config: Config, running: Mapping[str, int], window: str) -> dict[str, float]:
    """What one replica of each scaling service carries now, averaged over `window`: requests per second
    through the load balancer (its domains' share of Caddy's requests), or the share of its CPU request
    it uses. A service without data (no samples yet) is left out: it holds its count."""
    hosts = _query(prometheus, f"sum by (host) (rate(caddy_http_request_duration_seconds_count[{window}]))", "host")
    cores = _query(prometheus, f'sum by (service) (rate(process_cpu_seconds_total{{job="services"}}[{window}]))',
                   "service")
    found = {}
    for name, workload in config.workloads().items():
        current, bounds = running.get(name), workload.autoscale
        if not (bounds and current):
            continue
        if bounds.target.requests_per_second_per_replica is not None:
            served = [hosts[d.name] for d in config.serving if d.service == name and d.name in hosts]
            if served:
                found[name] = sum(served) / current
        elif name in cores:
            found[name] = cores[name] / current / (workload.resources.millicores / 1000)
    return found


def step(name: str, bounds: Autoscale, current: int, per_replica: float, history: Sequence[tuple[float, int]],
         now: float) -> Step:
    """One tick for one service: the recommendation added to its history, and the count to scale to."""
    target = bounds.target
    goal = (target.requests_per_second_per_replica if target.requests_per_second_per_replica is not None
            else int(target.cpu_per_replica.rstrip("%")) / 100)
    window = duration_seconds(bounds.scale_down_after)
    kept = tuple((at, count) for at, count in history if now - at <= 2 * window)
    recent = (*kept, (now, recommend(bounds, current, per_replica, goal)))
    metric = ("requests_per_second_per_replica" if target.requests_per_second_per_replica is not None
              else "cpu_per_replica")
    return Step(name, current, stabilized(bounds, current, recent, now), f"{metric} {per_replica:.2f} (target "
                f"{goal:g})", recent)


def _query(prometheus: str, query: str, label: str) -> dict[str, float]:
    try:
        result = requests.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=5).json()["data"]["result"]
    except (requests.RequestException, ValueError, KeyError) as error:
        raise MetricsUnavailable(f"Prometheus at {prometheus} did not answer ({type(error).__name__}): every count "
                                 "holds until it does") from None
    return {sample["metric"].get(label, ""): float(sample["value"][1]) for sample in result}


def record_decisions(path: Path, steps: Sequence[Step], at: float) -> None:
    """The last scaling decision of each service, for `atl infra status`."""
    decisions = json.loads(path.read_text()) if path.exists() else {}
    for step in steps:
        decisions[step.service] = {"at": at, "from": step.current, "to": step.desired, "metric": step.metric}
    replace_file(path, json.dumps(decisions, indent=1))


def status(config: Config, path: Path) -> dict[str, dict]:
    """Each scaling service's bounds and its last scaling decision."""
    decisions = json.loads(path.read_text()) if path.exists() else {}
    return {name: {"min": w.autoscale.min, "max": w.autoscale.max, "last_decision": decisions.get(name)}
            for name, w in config.workloads().items() if w.autoscale}
