"""`atl utils git-hook install`: the hook and its secret written, nobody else's hook overwritten."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from atl_pipeline.cli import main
from atl_pipeline.githook import HOOK, SECRET_FILE, HookError, install

URL = "http://127.0.0.1:3000/hooks/git"


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    """The layout git reads a bare repository from (as `git init --bare` leaves it)."""
    for folder in ("objects", "refs", "hooks"):
        (tmp_path / "infra.git" / folder).mkdir(parents=True)
    return tmp_path / "infra.git"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_hook_and_its_secret_are_written_with_their_modes(bare: Path):
    hook = install(bare, URL, "s3cret")
    assert hook == bare / "hooks" / HOOK
    assert mode(hook) == 0o755 and mode(bare / "hooks" / SECRET_FILE) == 0o600
    assert (bare / "hooks" / SECRET_FILE).read_text() == "s3cret\n"
    assert f"URL = {URL!r}" in hook.read_text() and "s3cret" not in hook.read_text()
    compile(hook.read_text(), str(hook), "exec")  # a Python script as written


def test_installing_again_replaces_atls_own_hook(bare: Path):
    install(bare, URL, "first")
    install(bare, "http://127.0.0.1:4000/hooks/git", "second")
    assert "4000" in (bare / "hooks" / HOOK).read_text()
    assert (bare / "hooks" / SECRET_FILE).read_text() == "second\n"


def test_a_hook_of_anothers_is_never_overwritten(bare: Path):
    theirs = "#!/bin/sh\nexec /usr/local/bin/notify-ci\n"
    (bare / "hooks" / HOOK).write_text(theirs)
    with pytest.raises(HookError, match="exists and is not atl's"):
        install(bare, URL, "s3cret")
    assert (bare / "hooks" / HOOK).read_text() == theirs
    assert not (bare / "hooks" / SECRET_FILE).exists()


def test_a_folder_that_is_no_repository_is_refused(tmp_path: Path):
    with pytest.raises(HookError, match="is not a git repository"):
        install(tmp_path, URL, "s3cret")


def test_the_command_needs_the_secret_and_says_so(bare: Path, monkeypatch, capsys):
    monkeypatch.delenv("ATL_WEBHOOK_SECRET", raising=False)
    assert main(["utils", "git-hook", "install", str(bare)]) == 2
    assert "set ATL_WEBHOOK_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("ATL_WEBHOOK_SECRET", "s3cret")
    assert main(["utils", "git-hook", "install", str(bare)]) == 0
    assert capsys.readouterr().out == f"installed {bare / 'hooks' / HOOK}: each push is sent to {URL}\n"
