"""A real git remote for the git_push sensor: a bare repository and a clone that pushes to it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

IDENTITY = {"GIT_AUTHOR_NAME": "Ada Operator", "GIT_AUTHOR_EMAIL": "ada@example.org",
            "GIT_COMMITTER_NAME": "Ada Operator", "GIT_COMMITTER_EMAIL": "ada@example.org"}


class Remote:
    """`origin` is a bare repository; `clone` is the operator's checkout, which commits and pushes."""

    def __init__(self, origin: Path, clone: Path):
        self.origin, self.clone = origin, clone

    @classmethod
    def create(cls, root: Path, files: Path) -> Remote:
        """A repository whose first commit, on `main`, holds the files of the folder `files`."""
        remote = cls(root / "origin.git", files)
        git("init", "--quiet", "--bare", "--initial-branch=main", str(remote.origin))
        remote.git("init", "--quiet", "--initial-branch=main")
        remote.git("remote", "add", "origin", str(remote.origin))
        (files / ".gitignore").write_text(".atl/\n")
        remote.commit("the example project", ".")
        return remote

    def git(self, *args: str) -> str:
        return git("-C", str(self.clone), *args)

    def commit(self, message: str, *paths: str) -> str:
        """Commit the paths and push; returns the new commit's sha."""
        self.git("add", "--", *paths)
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        self.git("push", "--quiet", "origin", "main")
        return self.git("rev-parse", "HEAD").strip()

    def edit(self, path: str, old: str, new: str, message: str) -> str:
        file = self.clone / path
        text = file.read_text()
        assert old in text, f"{old!r} is not in {path}"
        file.write_text(text.replace(old, new, 1))
        return self.commit(message, path)


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True,
                          env={**os.environ, **IDENTITY}).stdout
