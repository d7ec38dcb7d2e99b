"""A located problem in a configuration file, and the error that carries several."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from atl_pipeline.errors import AtlError

MAX_FINDINGS = 100  # a list of findings shows this many, then says how many more there are
MAX_MESSAGE = 1000  # characters of one message: past that, a value it echoes is cut
F = TypeVar("F")  # a Finding, or a dataclass like it with a message (a lint finding)


@dataclass(frozen=True, order=True)
class Finding:
    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return printable(echoed(f"{self.file}:{self.line}:{self.column}: {self.message}"))


def echoed(text: str) -> str:
    """`text`, which may echo what a file holds, as it may be printed: without credentials, and cut to
    MAX_MESSAGE characters (a value of megabytes is not printed whole)."""
    text = without_credentials(text)
    return text if len(text) <= MAX_MESSAGE else f"{text[:MAX_MESSAGE]}... ({len(text) - MAX_MESSAGE:,} characters cut)"


# the user part of an address (`https://user:pass@`, `https://token@`) and sftp's `user:pass@`
_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@'\"]+@|\b(sftp:[^\s:/@'\"]+):[^\s/@'\"]+@")


def without_credentials(text: str) -> str:
    """`text` with the credentials of any address in it written as `***`: a finding echoes what was written,
    and what was written in the wrong field may be a credential."""
    return _CREDENTIALS.sub(lambda match: f"{match[1]}***@" if match[1] else f"{match[2]}:***@", text)


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
