"""The worst file of each class of hostile input (tests/worst_cases.py), each up to the size
limit, through `atl infra validate` in a child process: answered with located findings or a
usage error, never a traceback, in bounded memory and with bounded output. How long each
takes is measured by bench/validate.py, not asserted here."""

from __future__ import annotations

import re

import pytest

from tests.worst_cases import WORST_CASES, atl

pytestmark = pytest.mark.slow  # each worst case, up to the size limit, through `atl` in a child process: seconds each

MEMORY = 512 * 2**20
OUTPUT = 64 * 1024
LOCATED = re.compile(r"^\S+:\d+:\d+: \S")


@pytest.mark.parametrize("case", list(WORST_CASES))
def test_the_worst_case_of_each_class_is_answered_within_bounds(case, tmp_path, hang_guard):
    path = tmp_path / "domains.yml"
    path.write_text(WORST_CASES[case]())
    answer = atl("infra", "validate", str(path))
    assert answer.code in (0, 1), answer.output[-2000:]
    assert answer.peak_bytes < MEMORY, f"{answer.peak_bytes / 2**20:.0f} MiB"
    assert len(answer.output.encode()) < OUTPUT
    lines = answer.output.splitlines()
    assert all(LOCATED.match(line) for line in lines) if answer.code else lines == [f"{path}: valid (0 domains, "
                                                                                       "1 services)"]
