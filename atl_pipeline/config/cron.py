"""Cron schedules judged as Dagster's daemon will run them.

A schedule must parse as five plain fields, pass Dagster's own parser (a code location whose
schedule Dagster refuses does not load at all), and fire: `0 0 31 4 *` (April 31) is valid
cron that no calendar has, and Dagster's iterator fails on it at every tick. Dagster matches
the day of the month and the day of the week together (both must hold), so a schedule fires
when a month it names has a day it names; every such date falls on each weekday in some year.
(tests/test_hostile_round3.py checks this judgement against Dagster's own iterator.)
"""

from __future__ import annotations

import re

import dagster as dg

FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
PART = re.compile(r"(\*|([0-9]{1,2})(-([0-9]{1,2}))?)(/([1-9][0-9]?))?")
DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February's 29th comes every four years


def check_cron(value: str) -> str:
    """`value`, or ValueError saying what to write."""
    fields = value.split()
    if len(fields) != len(FIELDS):
        raise ValueError("a cron schedule has five fields, minute hour day month weekday (`0 3 * * *`)")
    for field, (name, low, high) in zip(fields, FIELDS, strict=True):
        if problem := _field_problem(field, low, high):
            raise ValueError(f"the {name} field `{field[:20]}` {problem}: each field is `*`, a number from {low} to "
                             f"{high}, a range `a-b` or a list, with an optional `/step` (`0 3 * * *`)")
    try:
        dg.ScheduleDefinition(name="check", cron_schedule=value, job_name="check", execution_timezone="UTC")
    except dg.DagsterInvalidDefinitionError:
        raise ValueError(f"the Dagster scheduler refuses `{value}`: write a day that every month named has") from None
    days, months = _values(fields[2], 1, 31), _values(fields[3], 1, 12)
    if not any(day <= DAYS_IN_MONTH[month - 1] for month in months for day in days):
        raise ValueError(f"`{value}` never fires: no calendar has that day in those months")
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
        if match[1] != "*" and (match[3] or match[6]) and len(values := _values(part, low, high)) == 1:
            return f"names {min(values)} alone through a range or step, which Dagster reads as `*`: write {min(values)}"
        if match[6] and int(match[6]) > high - low:
            return f"steps by {match[6]}, more than the field's range: it would fire once, at its start"
    return None


def _values(field: str, low: int, high: int) -> set[int]:
    """The numbers a checked field names."""
    found: set[int] = set()
    for part in field.split(","):
        match = PART.fullmatch(part)
        start = low if match[1] == "*" else int(match[2])
        end = high if match[1] == "*" else int(match[4] or (high if match[6] else match[2]))
        found.update(range(start, end + 1, int(match[6] or 1)))
    return found
