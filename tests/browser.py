"""Debian's Chromium under Playwright, for the tests that open the UI."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO

ARTIFACTS = REPO / "test-artifacts"  # screenshots

# Debian's Chromium, as root, on a machine without the internet
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]


def chromium() -> str:
    path = Path("/usr/bin/chromium")
    assert path.exists(), "install the Debian package chromium (.ci/run does)"
    return str(path)


def skip_welcome(page) -> None:
    """Dagster's newsletter dialog, which a new instance opens over the UI."""
    page.get_by_role("button", name="Skip").click(timeout=20_000)
