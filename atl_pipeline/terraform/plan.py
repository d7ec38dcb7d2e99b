"""What a saved plan would do, from `terraform show -json`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

ACTIONS = ("create", "update", "replace", "delete")
DESTRUCTIVE = ("replace", "delete")


@dataclass(frozen=True)
class Change:
    address: str
    action: str  # one of ACTIONS


@dataclass(frozen=True)
class PlanSummary:
    changes: tuple[Change, ...]

    @classmethod
    def from_show_json(cls, plan: dict) -> PlanSummary:
        changes = []
        for resource in plan.get("resource_changes", []):
            action = _action(resource["change"]["actions"])
            if action:
                changes.append(Change(resource["address"], action))
        return cls(tuple(sorted(changes, key=lambda change: change.address)))

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(change.action for change in self.changes)
        return {action: counted[action] for action in ACTIONS}

    @property
    def destructive(self) -> tuple[Change, ...]:
        return tuple(change for change in self.changes if change.action in DESTRUCTIVE)

    def describe(self) -> str:
        """`2 to create, 1 to update`, or `no changes`."""
        parts = [f"{count} to {action}" for action, count in self.counts.items() if count]
        return ", ".join(parts) or "no changes"


def _action(actions: list[str]) -> str | None:
    if sorted(actions) == ["create", "delete"]:
        return "replace"
    if actions in (["create"], ["update"], ["delete"]):
        return actions[0]
    return None  # no-op, read
