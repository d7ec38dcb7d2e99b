"""The Dagster layer uses Dagster's public API only: what it relies on beyond it is in one adapter."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import REPO

ADAPTER = REPO / "atl_pipeline" / "orchestration" / "dagster_adapter.py"


def test_no_private_dagster_import_outside_the_adapter():
    found = []
    for path in sorted([*(REPO / "atl_pipeline").rglob("*.py"), *(REPO / "bench").rglob("*.py")]):
        if path != ADAPTER:
            found += [f"{path.relative_to(REPO)}:{line}: {name}" for line, name in private_imports(path.read_text())]
    assert found == []


def private_imports(source: str) -> list[tuple[int, str]]:
    """Imports of a private module of a dagster package (`dagster._core...`, `dagster_shared._...`)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [(node.lineno, node.module)]
    return [(line, name) for line, name in names
            if name.split(".")[0].startswith("dagster") and any(part.startswith("_") for part in name.split(".")[1:])]


@pytest.mark.parametrize("line", ["from dagster._core.definitions.reconstruct import ReconstructableJob",
                                  "import dagster._check", "from dagster_shared._utils import x"])
def test_the_check_sees_a_private_import(line):
    assert private_imports(line)
