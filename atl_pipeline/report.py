"""Tables of a configuration, for the terminal and for Dagster's Markdown metadata."""

from __future__ import annotations

import re
from collections.abc import Sequence

from atl_pipeline.config import Config
from atl_pipeline.findings import Finding

DOMAIN_HEADERS = ("domain", "service", "replicas", "cpu", "memory", "ssl", "monitoring")


def domain_rows(config: Config) -> list[tuple[str, ...]]:
    return [
        (d.name, d.service, str(d.replicas), d.resources.cpu, d.resources.memory,
         _yes(d.ssl), _yes(d.monitoring))
        for d in config.domains
    ]


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [headers, *rows]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], limit: int = 200) -> str:
    """A Markdown table of at most `limit` rows (metadata stays small for large configs)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"\n... and {len(rows) - limit} more")
    return "\n".join(lines)


def markdown_findings(findings: Sequence[Finding], limit: int = 200) -> str:
    if not findings:
        return "No findings."
    lines = [f"- {escape_markdown(str(f))}" for f in findings[:limit]]
    if len(findings) > limit:
        lines.append(f"- ... and {len(findings) - limit} more")
    return "\n".join(lines)


def escape_markdown(text: str) -> str:
    """Text shown literally in Markdown: user-written values never become markup or HTML."""
    return re.sub(r"([\\`*_\[\]|<>#{}])", r"\\\1", text)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
