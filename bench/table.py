"""A benchmark's table, printed a row at a time as it is measured: aligned plain text, or
Markdown (`--markdown`) to paste into the docs as it is."""

from __future__ import annotations


class Table:
    def __init__(self, columns: dict[str, int], markdown: bool = False):
        """`columns`: each title with the width of its values in plain text."""
        self.widths = [max(len(title), width) for title, width in columns.items()]
        self.markdown = markdown
        self.row(*columns)
        if markdown:
            print("|" + "---|" * len(columns), flush=True)

    def row(self, *cells: object) -> None:
        texts = [str(cell) for cell in cells]
        if self.markdown:
            print("| " + " | ".join(texts) + " |", flush=True)
        else:
            first, *rest = zip(texts, self.widths, strict=True)
            print("  ".join([first[0].ljust(first[1])] + [text.rjust(width) for text, width in rest]), flush=True)
