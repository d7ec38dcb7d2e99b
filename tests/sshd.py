"""A real OpenSSH server on loopback for the tests (Debian's openssh-server), whose sessions
find the stand-in `docker` first on their PATH."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from atl_pipeline.runtime.ssh import RemoteHost
from tests.ports import free_port

SSHD = Path("/usr/sbin/sshd")
STAND_IN = Path(__file__).parent / "stand_in" / "docker"
ADDRESSES = 8  # the servers are at 127.0.0.1 to 127.0.0.8


class Sshd:
    """sshd -D on 127.0.0.1 to 127.0.0.8 (the servers' addresses) with its own host key, one
    authorized client key, and `bin/` (holding the stand-in docker) first on the PATH of every
    session."""

    def __init__(self, root: Path):
        self.root, self.port = root, free_port()
        self.bin = root / "bin"
        self.identity, self.known_hosts = root / "client_key", root / "known_hosts"

    def start(self) -> Sshd:
        if not SSHD.exists():
            raise RuntimeError("sshd not found: install the Debian package openssh-server (.ci/run does)")
        self.bin.mkdir(parents=True)
        docker = self.bin / "docker"  # run by this Python, which has what it imports (PyYAML)
        docker.write_text(f"#!{sys.executable}\n" + STAND_IN.read_text().split("\n", 1)[1])
        docker.chmod(0o755)
        for key in (self.root / "host_key", self.identity):
            new_key(key)
        shutil.copy(self.identity.with_suffix(".pub"), self.root / "authorized_keys")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege-separation folder
        listen = "\n".join(f"ListenAddress 127.0.0.{n}" for n in range(1, ADDRESSES + 1))
        (self.root / "sshd_config").write_text(f"""\
{listen}
Port {self.port}
HostKey {self.root / 'host_key'}
PidFile {self.root / 'sshd.pid'}
AuthorizedKeysFile {self.root / 'authorized_keys'}
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
SetEnv PATH={self.bin}:/usr/bin:/bin
""")
        return self.launch()

    def replace_host_key(self) -> None:
        """Restart with a new host key, as a server replaced at the same address would have."""
        self.stop()
        (self.root / "host_key").unlink()
        new_key(self.root / "host_key")
        self.launch()

    def launch(self) -> Sshd:
        """Start sshd as configured (again, after `stop`)."""
        self.process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(self.root / "sshd_config")],
                                        stdout=subprocess.DEVNULL, stderr=(self.root / "sshd.log").open("a"))
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"sshd did not start: {(self.root / 'sshd.log').read_text()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """The server and its sessions (each in its own process group): the clients' shared
        connections end with them."""
        for pid in [self.process.pid, *children(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self.process.wait(timeout=10)

    def host(self, root: Path) -> RemoteHost:
        """A server whose project folder is `root`, reached through this sshd."""
        return RemoteHost("127.0.0.1", str(root), self.identity, self.known_hosts,
                          user=pwd.getpwuid(os.getuid()).pw_name, port=self.port)

    def containers(self, address: str) -> list[dict]:
        """The containers the stand-in docker keeps for the server at `address`, as `docker ps` shows them."""
        state = self.bin / f"containers-{address}.json"
        return json.loads(state.read_text()) if state.exists() else []

    def set_containers(self, address: str, containers: list[dict]) -> None:
        (self.bin / f"containers-{address}.json").write_text(json.dumps(containers))

    def calls(self) -> list[dict]:
        """What the stand-in docker was asked, in order."""
        log = self.bin / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def new_key(path: Path) -> Path:
    """A new ed25519 key pair at `path` (and `path`.pub)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found
