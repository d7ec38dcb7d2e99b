"""A located problem in a configuration file, and the error that carries several."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from atl_pipeline.errors import AtlError

MAX_FINDINGS = 100  # a list of findings shows this many, then says how many more there are
F = TypeVar("F")  # a Finding, or a dataclass like it with a message (a lint finding)


@dataclass(frozen=True, order=True)
class Finding:
    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return printable(f"{self.file}:{self.line}:{self.column}: {self.message}")


def printable(text: str) -> str:
    """`text` on one line as a terminal shows it: every character that is not printed as
    itself (a line break, an escape sequence, a NUL) written as its escape, so no value from
    a file can start a line of its own or drive the terminal."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def capped(findings: Iterable[F], more: int = 0) -> list[F]:
    """The first MAX_FINDINGS findings in file order and, when there are more (counting `more`
    that were not even kept), one where the next would be that says how many."""
    ordered = sorted(findings)
    rest = len(ordered) - MAX_FINDINGS + more
    if rest <= 0:
        return ordered
    following = ordered[min(MAX_FINDINGS, len(ordered) - 1)]
    return [*ordered[:MAX_FINDINGS], dataclasses.replace(following, message=f"and {rest:,} more findings; "
                                                         "correct these first")]


class ConfigError(AtlError):
    """The configuration could not be loaded; `findings` lists every reason found (at most
    MAX_FINDINGS of them, then how many more)."""

    def __init__(self, findings: Iterable[Finding], more: int = 0):
        self.findings = capped(findings, more)
        super().__init__("\n".join(map(str, self.findings)))
