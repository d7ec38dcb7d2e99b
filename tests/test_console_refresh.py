"""The console takes changed accounts while it runs (atl_pipeline/console/__init__.py: Console.refresh),
without starting it: domains.yml edited under a console without operators."""

from __future__ import annotations

import os
from pathlib import Path

from atl_pipeline.console import Console
from tests.postgres import free_port
from tests.test_console import project_with_a_workspace

SERVICE = "services: {web: {command: [app, '{port}'], port: 12000}}\ndomains: [{name: www.example.org, service: web}]\n"


def edit(file: Path, text: str) -> None:
    file.write_text(text)
    stamp = file.stat().st_mtime + 1  # a new modification time, however coarse the file system's clock
    os.utime(file, (stamp, stamp))


def test_without_operators_an_edit_says_nothing_and_a_new_forge_is_named(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("FORGE_SECRET", "the forge's secret")
    project = project_with_a_workspace(tmp_path / "project")
    edit(project.domains_file, SERVICE)
    console = Console(project, port=free_port())
    try:
        edit(project.domains_file, SERVICE.replace("12000", "12100"))
        assert console.refresh() is None  # no accounts, nothing to say (no "did not take the accounts")

        edit(project.domains_file, SERVICE + "service_accounts: {forge: {webhook_secret: env:FORGE_SECRET}}\n")
        assert console.refresh() == "forges: forge"
        assert "forge" in console.receiver.verifiers
    finally:
        console.receiver.server_close()
