"""A real git remote for the git_push sensor: a bare repository and a clone that pushes to it."""

from __future__ import annotations

import http.server
import os
import subprocess
import threading
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


class HttpRemote:
    """Bare repositories under `root` served over HTTP on loopback by `git http-backend`, as a
    forge serves them: what a remote URL with credentials (`http://user:token@...`) reaches."""

    def __init__(self, root: Path):
        self.root = root
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, repository: str, credentials: str = "") -> str:
        return f"http://{credentials + '@' if credentials else ''}127.0.0.1:{self.server.server_port}/{repository}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        root = self.root

        class GitBackend(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path, _, query = self.path.partition("?")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                done = subprocess.run(["git", "http-backend"], input=body, capture_output=True, env={
                    "GIT_PROJECT_ROOT": str(root), "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path,
                    "QUERY_STRING": query, "REQUEST_METHOD": self.command, "CONTENT_LENGTH": str(len(body)),
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""), "PATH": os.environ["PATH"]})
                head, _, content = done.stdout.partition(b"\r\n\r\n")
                fields = dict(line.decode().split(": ", 1) for line in head.split(b"\r\n") if b": " in line)
                self.send_response(int(fields.pop("Status", "200").split()[0]))
                for name, value in fields.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_POST = do_GET

            def log_message(self, *args) -> None:
                pass

        return GitBackend
