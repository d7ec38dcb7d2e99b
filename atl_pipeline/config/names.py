"""Names that reach templates, process tables and URLs: checked here, before anything uses them.

A hostname is RFC 1123 (IDNA 2008 for non-ASCII names); an identifier is `[a-z0-9-]`.
Neither can carry quotes, braces, `$`, `/`, whitespace or anything else a template,
a shell or a config language would read as syntax.
"""

from __future__ import annotations

import re

import idna

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")  # a hostname label; identifiers are the same
MAX_HOSTNAME = 253


def normalize_hostname(written: str) -> str:
    """The canonical form of a hostname: lowercase ASCII (punycode), no trailing dot.

    Raises ValueError saying what is wrong with it.
    """
    name = written.removesuffix(".")  # the root: `example.org.` is `example.org`
    if len(name) > MAX_HOSTNAME:  # before IDNA, whose cost grows with the length
        raise ValueError(f"a domain name has at most {MAX_HOSTNAME} characters, this one {len(name)}")
    name = name.lower() if name.isascii() else _to_ascii(name)
    if not name:
        raise ValueError("a domain name cannot be empty")
    if len(name) > MAX_HOSTNAME:
        raise ValueError(f"{_show(written)} has {len(name)} characters in ASCII (punycode), "
                         f"more than the {MAX_HOSTNAME} a domain name may have")
    labels = name.split(".")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise ValueError(
                f"{_show(written)} is not a valid hostname: label {_show(label)} must be 1-63 "
                "letters, digits or hyphens, not starting or ending with a hyphen"
            )
        if label[2:4] == "--":
            _check_reserved(label, written)
    if labels[-1].isdigit():
        raise ValueError(f"{_show(written)} is not a hostname: its last label is all digits")
    return name


def _check_reserved(label: str, name: str) -> None:
    """A label with `--` in its third and fourth characters is reserved for IDNA (RFC 5891):
    only a valid A-label (`xn--`), one that decodes and encodes back to itself, may have it."""
    if not label.startswith("xn--"):
        raise ValueError(f"{_show(name)} is not a valid hostname: label {_show(label)} has `--` in its third and "
                         "fourth characters, which only an IDNA label (xn--) may have")
    try:
        valid = idna.encode(idna.decode(label)).decode("ascii") == label
    except (idna.IDNAError, UnicodeError):
        valid = False
    if not valid:
        raise ValueError(f"{_show(name)} is not a valid hostname: label {_show(label)} is not a valid IDNA "
                         "A-label; write the name in Unicode and let it be converted")


def _to_ascii(name: str) -> str:
    try:
        return idna.encode(name.lower()).decode("ascii")
    except (idna.IDNAError, UnicodeError) as error:
        raise ValueError(f"{_show(name)} is not a valid internationalized domain name: {error}") from None


def check_identifier(name: str) -> str:
    if not _LABEL.fullmatch(name):
        raise ValueError(
            f"{_show(name)} is not a valid name: use 1-63 lowercase letters, digits and hyphens, "
            "starting and ending with a letter or digit"
        )
    return name


def _show(text: str, limit: int = 80) -> str:
    """A user-written value, quoted and cut short, safe to print in one line."""
    shown = repr(text[:limit])
    return shown + "..." if len(text) > limit else shown
