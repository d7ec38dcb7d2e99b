"""`make mutation`'s summary: `mutmut results --all true` on stdin, a Markdown table of the
mutants of each module by status on stdout (the table docs/testing.md records)."""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict

COLUMNS = ("killed", "survived", "no tests", "timeout")


def main() -> None:
    counts: dict[str, Counter] = defaultdict(Counter)
    for line in sys.stdin:
        name, _, status = line.strip().rpartition(": ")
        module = re.sub(r"\.x(_|ǁ).*", "", name)  # mutmut names a mutant module.x_function__mutmut_N
        counts[module][status if status in COLUMNS else "other"] += 1
    total = sum(counts.values(), Counter())
    print("| module | mutants | " + " | ".join(COLUMNS) + " | other |")
    print("|---|" + "---:|" * (len(COLUMNS) + 2))
    for module, row in [*sorted(counts.items()), ("**total**", total)]:
        cells = [row[column] for column in (*COLUMNS, "other")]
        print(f"| {module} | {sum(row.values())} | " + " | ".join(map(str, cells)) + " |")


if __name__ == "__main__":
    main()
