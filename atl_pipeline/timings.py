"""How long the stages wait for what they start, and how early certificates renew.

The defaults serve every command; a Dagster run takes them from the `target` resource,
whose fields these are, so an operator (or a test) sets them without touching the code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timings:
    health_timeout: float = 30.0
    """Seconds a new replica has to answer its health path before the roll gives up (local)."""
    rollout_timeout: float = 120.0
    """Seconds each server's new containers have to pass their health checks (hcloud)."""
    drain_seconds: float = 2.5
    """Seconds between the new replicas serving and the old ones stopping: more than the load
    balancer's health-check interval, so it has found the new ones first."""
    settle_seconds: float = 15.0
    """Seconds the health check gives a domain to answer before it counts as failing."""
    monitoring_timeout: float = 60.0
    """Seconds Prometheus's targets have to be up after a change."""
    renew_within_days: float = 14.0
    """A certificate expiring within this many days is renewed (where the target renews them)."""


DEFAULT_TIMINGS = Timings()
