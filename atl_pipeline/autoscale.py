"""Auto-scaling within the bounds declared in domains.yml (`services.<name>.autoscale`).

Git holds the bounds; the count moves within them. A deploy declares, for each service that
scales, the count the autoscaler asked for in this run, else the count that runs now, else
where the service starts, always within its bounds (`declared_counts`), so a deploy from git
keeps the current count and clamps it to new bounds. The count is decided the way Kubernetes'
horizontal autoscaler decides it (`recommend`, then `stabilized`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from atl_pipeline.config.model import Autoscale, Config, duration_seconds

TOLERANCE = 0.1  # a ratio of observed to target within 10% of 1 changes nothing


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
