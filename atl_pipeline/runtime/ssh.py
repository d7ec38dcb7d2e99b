"""Commands and files on a server over SSH, with OpenSSH's client.

The server's login shell parses the command line, so each argument is quoted for it
(`shlex.join`): a value reaches the remote program as exactly the argument it is, and is
never read as shell syntax. Host keys are trusted on first use and pinned afterwards in
the pipeline's own known_hosts file.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from atl_pipeline.runtime.supervisor import LocalRuntimeError

TIMEOUT = 600.0


class RemoteError(LocalRuntimeError):
    """A command on a server failed, or the server could not be reached."""


@dataclass(frozen=True)
class RemoteHost:
    address: str
    root: str  # the folder on the server that holds this project's files
    identity: Path  # the private key (mode 0600)
    known_hosts: Path
    user: str = "root"
    port: int = 22

    def run(self, argv: list[str], *, stdin: str | None = None, timeout: float = TIMEOUT) -> str:
        """Run `argv` on the server; its standard output."""
        command = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
                   "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "ConnectTimeout=10",
                   "-i", str(self.identity), "-p", str(self.port), "-l", self.user, self.address, "--",
                   shlex.join(argv)]
        try:
            result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{self.address}: `{argv[0]}` took longer than {timeout:.0f} s") from None
        if result.returncode != 0:
            detail = "\n".join(result.stderr.strip().splitlines()[-10:]) or f"exit {result.returncode}"
            raise RemoteError(f"{self.address}: `{shlex.join(argv)[:200]}` failed: {detail}")
        return result.stdout

    def put(self, name: str, text: str) -> None:
        """Write `text` to `name` in the root folder, replacing the file whole."""
        self.run(["sh", "-c", 'mkdir -p "$1" && umask 077 && cat > "$1/$2.tmp" && mv "$1/$2.tmp" "$1/$2"',
                  "sh", self.root, name], stdin=text)
