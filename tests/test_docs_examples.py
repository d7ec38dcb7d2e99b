"""The examples of README.md and docs/ run as they are written, and print what they show.

Every ```console block is a session: `$ ` lines are commands, the lines after each are
its output. Each block runs in a fresh copy of the example project (on this test's ports),
and what a command prints must have the documented shape: the same lines, with numbers,
run ids and releases free to differ, `...` matching the rest of a line, and for a JSON
document the same keys at every level."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path

import pytest

from atl_pipeline import processes
from atl_pipeline.project import Project
from tests.conftest import REPO, copy_project, kill_stack

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```console\n(.*?)^```$", re.M | re.S)
DEFAULT_PORTS = {"http_port": 8000, "https_port": 8443, "admin_port": 2019, "prometheus_port": 9090,
                 "blackbox_port": 9115, "alertmanager_port": 9093}


def sessions() -> list[tuple[str, str]]:
    return [(f"{path.relative_to(REPO)}#{number}", block) for path in DOCUMENTS
            for number, block in enumerate(BLOCK.findall(path.read_text()), 1)]


@pytest.fixture
def example(tmp_path: Path):
    project = copy_project(tmp_path / "project")
    yield project
    kill_stack(project)


def test_the_docs_have_examples():
    assert len(sessions()) >= 3


@pytest.mark.slow
@pytest.mark.parametrize(("where", "block"), sessions(), ids=[where for where, _ in sessions()])
def test_a_documented_session_prints_what_it_shows(where: str, block: str, example: Project):
    for command, documented in steps(block):
        printed = run(example, command)
        assert same_shape(documented, printed), f"{where}: `$ {command}` printed:\n{printed}"


def steps(block: str) -> list[tuple[str, str]]:
    """(command, documented output) of each `$ ` line of a session."""
    found: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            found.append((line[2:], []))
        else:
            found[-1][1].append(line)
    return [(command, "\n".join(output)) for command, output in found]


def run(project: Project, command: str) -> str:
    """The command in the project's folder, the documented default ports moved to the project's."""
    ports = {str(default): str(port) for name, default in DEFAULT_PORTS.items()
             if (port := _port(project, name)) is not None}
    argv = [ports.get(word, word) for word in shlex.split(_moved(command, ports))]
    if argv[0] == "atl":
        argv = [sys.executable, "-m", "atl_pipeline.cli", *argv[1:]]
    done = processes.run(argv, cwd=project.root, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "ATL_PROJECT_DIR": str(project.root), "NO_COLOR": "1"})
    return (done.stdout + done.stderr).replace(str(project.root) + "/", "").rstrip("\n")


def _port(project: Project, name: str) -> int | None:
    match = re.search(rf"^  {name}: (\d+)", project.domains_file.read_text(), re.M)
    return int(match.group(1)) if match else None


def _moved(command: str, ports: dict[str, str]) -> str:
    return re.sub(r"(?<=:)(\d{4})\b", lambda m: ports.get(m.group(1), m.group(1)), command)


def same_shape(documented: str, printed: str) -> bool:
    if documented.lstrip().startswith(("{", "[")):
        return keys(json.loads(documented)) == keys(json.loads(printed))
    expected, actual = documented.splitlines(), printed.splitlines()
    return len(expected) == len(actual) and all(_line_matches(e, a) for e, a in zip(expected, actual, strict=True))


def keys(document: object) -> object:
    """A JSON document's shape: its keys at every level (a list's shape is its first item's)."""
    if isinstance(document, dict):
        return {key: keys(value) for key, value in document.items()}
    if isinstance(document, list):
        return [keys(document[0])] if document else []
    return None


def _line_matches(documented: str, printed: str) -> bool:
    documented, printed = _normal(documented), _normal(printed)
    if documented.endswith("..."):
        return printed.startswith(documented[:-3].rstrip())
    return documented == printed


def _normal(line: str) -> str:
    """Run ids, releases and numbers as placeholders; runs of spaces as one."""
    line = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\b[0-9a-f]{12}\b", "ID", line)
    line = re.sub(r"\d+(\.\d+)?", "N", line)
    return re.sub(r"\s+", " ", line).strip()
