"""Edits of domains.yml that keep the operator's comments, order and formatting.

A change is made in the text, at the positions the reader recorded, then the new text is
read again: it must load, and differ from the old configuration in that one value only.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from atl_pipeline.config.loader import LoadedConfig, load_config, load_source
from atl_pipeline.config.yaml_reader import Positions, decode_source, parse
from atl_pipeline.errors import AtlError
from atl_pipeline.files import replace_file

_SCALAR = re.compile(r"[^\s#,}\]]+")


class EditError(AtlError):
    """The edit cannot be made safely; the file is unchanged."""


def set_enabled(path: Path, domain: str, enabled: bool) -> tuple[bool, int]:
    """Set the domain's `enabled`; returns (whether the file changed, the line of the domain)."""
    loaded = load_config(path)
    index = _index(loaded, domain)
    positions = Positions()
    parse(loaded.source, positions)
    lines = _lines(loaded.source.text)
    value = "true" if enabled else "false"
    where = ("domains", index, "enabled")
    line = positions.of(("domains", index))[0]
    if loaded.config.domains[index].enabled == enabled:
        return False, line
    if where in positions.keys:
        row, column = positions.values[where]
        text = lines[row - 1]
        token = _SCALAR.match(text, column - 1)
        lines[row - 1] = text[:column - 1] + value + text[token.end() if token else column - 1:]
    else:
        row, column = positions.keys[("domains", index, "name")]
        text = lines[row - 1]
        if "{" in text[:column - 1] or text[:column - 1].rstrip().endswith(","):
            raise EditError(f"{loaded.source.name}:{row}: domain {domain} is written in flow style; "
                            f"add `enabled: {value}` to it by hand")
        newline = "\r\n" if text.endswith("\r\n") else "\n"
        lines[row - 1] = text if text.endswith("\n") else text + newline
        lines.insert(row, f"{' ' * (column - 1)}enabled: {value}{newline}")
    _write_checked(path, loaded, "".join(lines), index, enabled)
    return True, line


def _lines(text: str) -> list[str]:
    """The lines as the reader counts them, ends kept: only LF ends a line (not U+2028 and
    the other breaks of `str.splitlines`)."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return lines


def _index(loaded: LoadedConfig, domain: str) -> int:
    names = [d.name for d in loaded.config.domains]
    if domain in names:
        return names.index(domain)
    close = difflib.get_close_matches(domain, names, n=1)
    raise EditError(f"{loaded.source.name} declares no domain {domain}"
                    + (f"; did you mean {close[0]}?" if close else ""))


def _write_checked(path: Path, before: LoadedConfig, text: str, index: int, enabled: bool) -> None:
    """Write `text` only if it loads to the same configuration but for that one domain's `enabled`."""
    after = load_source(decode_source(text.encode(), before.source.name)).config
    expected = before.config.model_copy(deep=True)
    expected.domains[index] = expected.domains[index].model_copy(update={"enabled": enabled})
    if after != expected:
        raise EditError(f"{before.source.name}: the edit would change more than `enabled`; edit it by hand")
    replace_file(path, text)
