"""HTTP(S) requests as a client would make them, sent to a chosen address.

The request carries the domain as Host and, over TLS, as SNI, and the certificate is
verified against the given CA, while the connection goes to the load balancer's address
(no DNS is involved).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Response:
    status: int | None  # None when no response came
    seconds: float
    body: bytes = b""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, address: tuple[str, int], timeout: float):
        super().__init__(host, address[1], timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = _connect(self.address, self.timeout)


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, address: tuple[str, int], timeout: float, context: ssl.SSLContext):
        super().__init__(host, address[1], timeout=timeout, context=context)
        self.address = address

    def connect(self) -> None:
        raw = _connect(self.address, self.timeout)
        try:
            self.sock = self._context.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise


def _connect(address: tuple[str, int], timeout: float) -> socket.socket:
    """A TCP connection without Nagle's delay: a request leaves as soon as it is written."""
    sock = socket.create_connection(address, timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def connection(address: tuple[str, int], host: str, *, tls: bool, ca: Path | None = None,
               timeout: float = 5.0) -> http.client.HTTPConnection:
    """A connection to `address` that speaks to `host`: over TLS verified against `ca` when `tls`."""
    if tls:
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
        return _HTTPSConnection(host, address, timeout, context)
    return _HTTPConnection(host, address, timeout)


def get(address: tuple[str, int], host: str, path: str, *, tls: bool, ca: Path | None = None,
        timeout: float = 5.0) -> Response:
    """GET `path` from `host` at `address`; never raises for network or TLS errors."""
    start = time.perf_counter()
    client = connection(address, host, tls=tls, ca=ca, timeout=timeout)
    try:
        client.request("GET", path, headers={"Host": host, "Connection": "close"})
        response = client.getresponse()
        body = response.read()
        return Response(response.status, time.perf_counter() - start, body)
    except (OSError, http.client.HTTPException) as error:
        return Response(None, time.perf_counter() - start, error=f"{type(error).__name__}: {error}")
    finally:
        client.close()
