"""Deploy from git: poll a branch, mirror it under `.atl/git/`, export one commit's files.

A run deploys exactly the files of its commit, read from the mirror, never from a working
tree that someone may be editing.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from atl_pipeline import processes
from atl_pipeline.errors import AtlError
from atl_pipeline.project import Project, state_files

WATCHED = ("domains.yml", "terraform_templates")
GIT_TIMEOUT = 120.0
EXPORTS_KEPT = 10
_SEP = "\x1f"


class GitError(AtlError):
    """A git command failed; the message says which and why."""


@dataclass(frozen=True)
class Commit:
    sha: str
    author: str
    message: str  # the subject line


@dataclass(frozen=True)
class GitSource:
    """The branch to deploy from: ATL_GIT_REMOTE (a path or URL), ATL_GIT_BRANCH and ATL_GIT_PATH
    (the project's folder in that repository), each defaulting to the project's own repository."""

    remote: str
    branch: str
    subdir: str = ""

    @classmethod
    def of(cls, project: Project) -> GitSource | None:
        """The configured source, or None when nothing is configured and the project is not in git."""
        remote, branch = os.environ.get("ATL_GIT_REMOTE", ""), os.environ.get("ATL_GIT_BRANCH", "")
        subdir = os.environ.get("ATL_GIT_PATH")
        if remote:
            return cls(remote, branch or "main", (subdir or "").strip("/"))
        try:
            top = _git("rev-parse", "--show-toplevel", cwd=project.root).strip()
            prefix = _git("rev-parse", "--show-prefix", cwd=project.root).strip()
            current = _git("branch", "--show-current", cwd=project.root).strip()
        except GitError:
            return None
        return cls(top, branch or current or "main", (prefix if subdir is None else subdir).strip("/"))

    @classmethod
    def required(cls, project: Project) -> GitSource:
        """The configured source; a GitError when there is none."""
        if (source := cls.of(project)) is None:
            raise GitError("no git repository to read the commit from: set ATL_GIT_REMOTE")
        return source

    def paths(self) -> list[str]:
        return [f"{self.subdir}/{name}" if self.subdir else name for name in WATCHED]


class Mirror:
    """A bare mirror of the watched branch under `.atl/git/`, and the commits exported from it."""

    def __init__(self, project: Project):
        self.state = project.state_dir
        self.dir = project.state_dir / "git" / "mirror.git"
        self.exports = project.state_dir / "git" / "commits"

    def head(self, source: GitSource) -> str:
        """The branch's newest commit on the remote (`git ls-remote`: cheap, fetches nothing)."""
        _refuse_option(source.remote)
        ref = f"refs/heads/{source.branch}"
        for line in _git("ls-remote", source.remote, ref).splitlines():
            sha, name = line.split("\t")
            if name == ref:
                return sha
        raise GitError(redact_credentials(f"{source.remote} has no branch {source.branch}"))

    def fetch(self, source: GitSource) -> None:
        _refuse_option(source.remote)
        if not self.dir.exists():
            with state_files(self.state):
                self.dir.parent.mkdir(parents=True, exist_ok=True)
            _git("init", "--quiet", "--bare", str(self.dir))
        self._git("fetch", "--quiet", "--no-tags", "--force", source.remote,
                  f"refs/heads/{source.branch}:refs/heads/{source.branch}")

    def changes(self, source: GitSource, since: str | None, until: str) -> list[Commit]:
        """Commits after `since` up to `until` that touch the watched files, newest first. Without
        a usable `since` (the first tick, or history rewritten) the newest such commit alone."""
        known = since is not None and self._is_ancestor(since, until)
        span = [f"{since}..{until}"] if known else ["-1", until]
        out = self._git("log", f"--format=%H{_SEP}%an <%ae>{_SEP}%s", *span, "--", *source.paths())
        return [Commit(*line.split(_SEP, 2)) for line in out.splitlines() if line]

    def commit(self, sha: str) -> Commit:
        out = self._git("log", "-1", f"--format=%H{_SEP}%an <%ae>{_SEP}%s", sha, "--")
        return Commit(*out.strip().split(_SEP, 2))

    def export(self, sha: str, source: GitSource) -> Path:
        """The commit's watched files under `.atl/git/commits/<sha>/`; returns the project's folder there."""
        destination = self.exports / sha
        if not destination.exists():
            archive = _run("--git-dir", str(self.dir), "archive", "--format=tar", sha, "--", *source.paths(),
                           text=False)
            if archive.returncode != 0:
                raise GitError(f"cannot export {sha[:12]}: {archive.stderr.decode(errors='replace').strip()}")
            partial = self.exports / f".{sha}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            with state_files(self.state), tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
                partial.mkdir(parents=True)
                try:
                    tar.extractall(partial, filter="data")
                except tarfile.FilterError as error:  # a link out of the tree, say
                    raise GitError(f"cannot export {sha[:12]}: {error}") from None
                partial.rename(destination)
                self._prune()
        return destination / source.subdir if source.subdir else destination

    def _is_ancestor(self, older: str, newer: str) -> bool:
        return _run("--git-dir", str(self.dir), "merge-base", "--is-ancestor", older, newer).returncode == 0

    def _prune(self) -> None:
        exports = sorted((p for p in self.exports.iterdir() if not p.name.startswith(".")),
                         key=lambda path: path.stat().st_mtime)
        for old in exports[:-EXPORTS_KEPT]:
            shutil.rmtree(old, ignore_errors=True)

    def _git(self, *args: str) -> str:
        return _git("--git-dir", str(self.dir), *args)


def deployed_file(project: Project, commit: str | None) -> Path:
    """The domains.yml a deploy of `commit` reads (exported from the mirror), or without one the project's own."""
    if not commit:
        return project.domains_file
    return Mirror(project).export(commit, GitSource.required(project)) / "domains.yml"


def _git(*args: str, cwd: Path | None = None) -> str:
    """git's output; GitError when it fails."""
    done = _run(*args, cwd=cwd)
    if done.returncode != 0:
        raise GitError(redact_credentials(f"git {' '.join(args)}: {done.stderr.strip()}"))
    return done.stdout


def _run(*args: str, cwd: Path | None = None, text: bool = True) -> processes.CompletedProcess:
    """git run to its end; GitError when it is not installed or takes longer than GIT_TIMEOUT."""
    if shutil.which("git") is None:
        raise GitError("git is not installed: install it (apt-get install -y git)")
    try:
        return processes.run(["git", *args], cwd=cwd, capture_output=True, text=text, timeout=GIT_TIMEOUT, env=_env())
    except processes.TimeoutExpired:
        raise GitError(redact_credentials(f"git {' '.join(args)} took longer than {GIT_TIMEOUT:.0f} s")) from None


def redact_credentials(text: str) -> str:
    """`https://user:token@host/...` -> `https://***@host/...`: a remote's credentials stay out of logs."""
    return re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", text)


def _env() -> dict[str, str]:
    # a remote that asks for a password fails at once instead of waiting on a prompt
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C"}


def _refuse_option(remote: str) -> None:
    if remote.startswith("-"):
        raise GitError(f"refusing remote {remote!r}: it would be read as an option")
