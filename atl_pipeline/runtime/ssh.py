"""Commands and files on a server over SSH, with OpenSSH's client.

The server's login shell parses the command line, so each argument is quoted for it
(`shlex.join`): a value reaches the remote program as exactly the argument it is, and is
never read as shell syntax. Host keys are trusted on first use and pinned afterwards in
the pipeline's own known_hosts file. The calls to one server share one connection, kept
for a minute after the last (OpenSSH's ControlMaster): a call then costs a round trip, not
a handshake. Its socket is under the user's home, which is private and short enough for a
socket's path, where a project folder may not be.
"""

from __future__ import annotations

import functools
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from atl_pipeline import processes
from atl_pipeline.runtime.rolling import TargetError

TIMEOUT = 600.0
CONNECTIONS = Path.home() / ".cache" / "atl-ssh"  # the shared connections' sockets
# what ssh says when no connection opens at all; a refused key or host key is not among them
NO_CONNECTION = re.compile(r"Connection refused|Connection timed out|No route to host|Network is unreachable|"
                           r"Connection reset|Connection closed by|kex_exchange_identification")
NO_CLIENT = "OpenSSH's client is not installed: apt-get install -y openssh-client"


class RemoteError(TargetError):
    """A command on a server failed, or ssh did (a refused key, a changed host key)."""


class Unreachable(RemoteError):
    """No SSH session could be opened (the server down, or still booting)."""

    transient = True


@dataclass(frozen=True)
class RemoteHost:
    address: str
    root: str  # the folder on the server that holds this project's files
    identity: Path | None  # the private key (mode 0600); None: OpenSSH's own keys and agent
    known_hosts: Path
    user: str = "root"
    port: int = 22

    def run(self, argv: list[str], *, stdin: str | None = None, timeout: float = TIMEOUT) -> str:
        """Run `argv` on the server; its standard output."""
        identity = ["-o", "IdentitiesOnly=yes", "-o", f"IdentityFile={_path(self.identity)}"] if self.identity else []
        command = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
                   "-o", f"UserKnownHostsFile={_path(self.known_hosts)}", "-o", "ConnectTimeout=10",
                   "-o", "ServerAliveInterval=15", *identity, "-o", "ControlMaster=auto",
                   "-o", f"ControlPath={_connections()}/%C", "-o", "ControlPersist=60",
                   "-p", str(self.port), "-l", self.user, self.address, "--", shlex.join(argv)]
        try:
            result = processes.run(command, input=stdin, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise RemoteError(NO_CLIENT) from None
        except processes.TimeoutExpired:
            raise RemoteError(f"{self.address}: `{argv[0]}` took longer than {timeout:.0f} s") from None
        if result.returncode == 0:
            return result.stdout
        detail = "\n".join(result.stderr.strip().splitlines()[-10:]) or f"exit {result.returncode}"
        error = Unreachable if result.returncode == 255 and NO_CONNECTION.search(result.stderr) else RemoteError
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in result.stderr:
            error, detail = RemoteError, (
                f"its host key is not the one first seen there. If the server was rebuilt, forget the old key: "
                f"ssh-keygen -R '{self._known_as}' -f {self.known_hosts}")
        raise error(f"{self.address}: `{shlex.join(argv)[:200]}` failed: {detail}")

    @property
    def _known_as(self) -> str:
        """The host's name in known_hosts."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"

    def forget_host_key(self) -> None:
        """Drop the key pinned for this address (a new server there is trusted on first use)."""
        if self.known_hosts.exists():
            try:
                processes.run(["ssh-keygen", "-R", self._known_as, "-f", str(self.known_hosts)], capture_output=True,
                              timeout=30, check=False)
            except FileNotFoundError:
                raise RemoteError(NO_CLIENT) from None
            except processes.TimeoutExpired:
                raise RemoteError(f"ssh-keygen -R took longer than 30 s on {self.known_hosts}") from None

    def wait_until_reachable(self, seconds: float) -> None:
        """Until an SSH session opens, for at most `seconds` (a new server boots)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.run(["true"])
                return
            except Unreachable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)

    def put(self, name: str, text: str) -> None:
        """Write `text` to `name` in the root folder, replacing the file whole."""
        self.run(["sh", "-c", 'mkdir -p "$1" && umask 077 && cat > "$1/$2.tmp" && mv "$1/$2.tmp" "$1/$2"',
                  "sh", self.root, name], stdin=text)


@functools.cache
def _connections() -> str:
    """The private folder of the shared connections' sockets, made once, as an ssh option's path."""
    CONNECTIONS.mkdir(parents=True, exist_ok=True)
    CONNECTIONS.chmod(0o700)
    return _path(CONNECTIONS)


def _path(path: Path) -> str:
    """A path as the value of an ssh option: quoted (it may hold spaces), `%` not read as a token."""
    text = str(path)
    if '"' in text:
        raise RemoteError(f"{text}: ssh cannot be given a path with a double quote; move the project")
    return '"' + text.replace("%", "%%") + '"'
