"""Ports for the tests' servers, never handed to two tests nor two test processes.

Ports come in aligned blocks of 100 (a service's block) below the kernel's ephemeral range,
where it picks ports of its own for outgoing connections. A block is reserved with a lock
file held open for the life of the process, and checked free port by port: a block that
another program listens in is skipped. Servers that can bind port 0 and say which port
they got (Python's own) do that instead.
"""

from __future__ import annotations

import fcntl
import functools
import os
import random
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from atl_pipeline.config.model import PORT_BLOCK

# Above the fixed ports of the test configurations (the imported one's services reach 10099), below the
# kernel's ephemeral range, which starts at 32768 (net.ipv4.ip_local_port_range).
FIRST, LAST = 11_000, 32_700
_LOCKS = Path(tempfile.gettempdir()) / "atl-test-ports"
_held: list[int] = []  # the lock files' descriptors: closing one would free its block


def reserve_block() -> int:
    """The first port of a block of PORT_BLOCK free ports, reserved for this process."""
    _LOCKS.mkdir(exist_ok=True)
    candidates = list(range(FIRST, LAST - PORT_BLOCK, PORT_BLOCK))
    random.shuffle(candidates)
    for first in candidates:
        descriptor = os.open(_LOCKS / str(first), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            continue
        if all(_free(port) for port in range(first, first + PORT_BLOCK)):
            _held.append(descriptor)
            return first
        os.close(descriptor)
    raise RuntimeError(f"no free block of {PORT_BLOCK} ports between {FIRST} and {LAST}")


@functools.cache
def service_ports() -> tuple[int, int]:
    """The first ports of the example's two services (backend-api, website) in this process's projects."""
    return reserve_block(), reserve_block()


def free_port() -> int:
    """A free port of this process's own, for a server that cannot report the port it bound."""
    return next(_singles)


def _single_ports() -> Iterator[int]:
    while True:
        first = reserve_block()
        yield from (port for port in range(first, first + PORT_BLOCK) if _free(port))


def _free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no owner
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_singles = _single_ports()
