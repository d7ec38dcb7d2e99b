"""Cron schedules judged as Dagster's daemon will run them.

A schedule must parse as five plain fields, pass Dagster's own parser (a code location whose
schedule Dagster refuses does not load at all), and fire: `0 0 31 4 *` (April 31) is valid
cron that no calendar has, and Dagster's iterator fails on it at every tick. This is the one
module that reaches into Dagster's private cron code: the daemon's own iterator is the only
exact judge of what it will do.
"""

from __future__ import annotations

import re
import time

from dagster._utils.schedules import cron_string_iterator, is_valid_cron_schedule

FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
PART = re.compile(r"(\*|([0-9]{1,2})(-([0-9]{1,2}))?)(/([1-9][0-9]?))?")


def check_cron(value: str) -> str:
    """`value`, or ValueError saying what to write."""
    fields = value.split()
    if len(fields) != len(FIELDS):
        raise ValueError("a cron schedule has five fields, minute hour day month weekday (`0 3 * * *`)")
    for field, (name, low, high) in zip(fields, FIELDS, strict=True):
        if problem := _field_problem(field, low, high):
            raise ValueError(f"the {name} field `{field[:20]}` {problem}: each field is `*`, a number from {low} to "
                             f"{high}, a range `a-b` or a list, with an optional `/step` (`0 3 * * *`)")
    if not is_valid_cron_schedule(value):
        raise ValueError(f"the Dagster scheduler refuses `{value}`: write a day that every month named has")
    try:
        next(cron_string_iterator(time.time(), value, "UTC"))
    except Exception:  # noqa: BLE001 (the vendored croniter raises its own classes)
        raise ValueError(f"`{value}` never fires: no calendar has that day in those months") from None
    return value


def _field_problem(field: str, low: int, high: int) -> str | None:
    for part in field.split(","):
        match = PART.fullmatch(part)
        if not match:
            return "is not cron"
        numbers = [int(n) for n in (match[2], match[4]) if n is not None]
        if any(not low <= n <= high for n in numbers):
            return f"is outside {low}-{high}"
        if numbers != sorted(numbers):
            return "has a range that runs backwards"
        if match[6] and int(match[6]) > high - low:
            return f"steps by {match[6]}, more than the field's range: it would fire once, at its start"
    return None
