"""A throwaway PostgreSQL server on loopback for the tests (initdb + pg_ctl)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.ports import free_port


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    if found is None:
        raise RuntimeError(f"{name} not found: install the Debian package postgresql (.ci/run does)")
    return found


class PostgresServer:
    """Started in a fresh data directory; as root, the server runs as the postgres user."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="atl-pg-"))
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres?sslmode=disable"

    def _run(self, *argv: str) -> None:
        command = list(argv)
        if os.geteuid() == 0:
            command = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(map(_quote, command))]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(_binary("initdb"), "-D", str(self.root / "data"), "-A", "trust", "-U", "postgres")
        self._pg_ctl("start")
        return self

    def restart(self) -> None:
        """A fast shutdown (every session is ended) and a start on the same port and data."""
        self.pause()
        self.resume()

    def pause(self) -> None:
        """A fast shutdown: every session is ended, the data kept for `resume`."""
        self._pg_ctl("stop")

    def resume(self) -> None:
        self._pg_ctl("start")

    def stop(self) -> None:
        try:
            self._pg_ctl("stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _pg_ctl(self, action: str) -> None:
        # `start` with -l: the server's output goes to the log, not to our pipes
        self._run(_binary("pg_ctl"), "-D", str(self.root / "data"), "-l", str(self.root / "log"), "-w", "-m", "fast",
                  "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1", action)

    def query(self, sql: str) -> str:
        return subprocess.run(["psql", self.url, "-At", "-c", sql], check=True, capture_output=True,
                              text=True, timeout=30).stdout.strip()


def _quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"
