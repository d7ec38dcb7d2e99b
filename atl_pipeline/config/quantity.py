"""Kubernetes resource quantities: `500m` cpu, `512Mi` memory, `2`, `1.5G`, `1e3`."""

from __future__ import annotations

import math
import re
from decimal import Decimal

_FACTORS = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9),
    "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30),
    "Ti": Decimal(2**40), "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(
    r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE](?P<exponent>[+-]?[0-9]{1,2}))?"
)


MAX_TEXT = 32
MAX_VALUE = Decimal(2**63)  # Kubernetes too keeps a quantity in 64 bits


def parse_quantity(text: str) -> Decimal:
    """The quantity's value in base units (cores, bytes). Raises ValueError when malformed, not
    positive, or beyond 2^63."""
    if len(text) > MAX_TEXT:
        raise ValueError(f"{text[:MAX_TEXT]!r}... is longer than any quantity ({MAX_TEXT} characters at most)")
    match = _QUANTITY.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a Kubernetes quantity; write it like 500m, 2, 512Mi or 1Gi")
    number = Decimal(match["number"])
    if match["exponent"] is not None:
        value = number.scaleb(int(match["exponent"]))
    else:
        value = number * _FACTORS[match["suffix"] or ""]
    if value <= 0:
        raise ValueError(f"{text!r} must be greater than zero")
    if value > MAX_VALUE:
        raise ValueError(f"{text!r} is more than 2^63, beyond any machine; write the real amount")
    return value


def cpu_millicores(text: str) -> int:
    return math.ceil(parse_quantity(text) * 1000)


def memory_bytes(text: str) -> int:
    return math.ceil(parse_quantity(text))


def format_bytes(count: int) -> str:
    for unit, factor in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if count >= factor:
            return f"{count / factor:.3g}{unit}"
    return str(count)
