"""HTTP(S) requests as a client would make them, sent to a chosen address.

The request carries the domain as Host and, over TLS, as SNI, and the certificate is
verified against the given CA, while the connection goes to the load balancer's address
(no DNS is involved).
"""

from __future__ import annotations

import functools
import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Frontend:
    """Where clients reach the services: the load balancer's address and ports, and the CA its
    certificates verify against (None: the CAs this machine trusts)."""

    address: str
    http_port: int
    https_port: int
    ca_cert: Path | None = None


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
        return _HTTPSConnection(host, address, timeout, _context(str(ca) if ca else None, _mtime(ca)))
    return _HTTPConnection(host, address, timeout)


@functools.lru_cache(maxsize=8)
def _context(cafile: str | None, mtime: int) -> ssl.SSLContext:
    """Contexts are shared: loading the CA for each request costs more than the request (keyed by
    the file's mtime, so a new CA is read again)."""
    return ssl.create_default_context(cafile=cafile)


def _mtime(path: Path | None) -> int:
    try:
        return path.stat().st_mtime_ns if path else 0
    except OSError:
        return 0


class Session:
    """One keep-alive connection to `host` at `address`, reopened after an error, as a browser
    keeps one: the first request pays for the TLS handshake, the next ones do not."""

    def __init__(self, address: tuple[str, int], host: str, *, tls: bool, ca: Path | None = None,
                 timeout: float = 5.0):
        self.host = host
        self.client = connection(address, host, tls=tls, ca=ca, timeout=timeout)

    def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        """GET `path`; never raises for network or TLS errors."""
        start = time.perf_counter()
        try:
            self.client.request("GET", path, headers={"Host": self.host, **(headers or {})})
            response = self.client.getresponse()
            body = response.read()
            return Response(response.status, time.perf_counter() - start, body)
        except (OSError, http.client.HTTPException) as error:
            self.client.close()  # the next request opens a new connection
            return Response(None, time.perf_counter() - start, error=f"{type(error).__name__}: {error}")

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def get(address: tuple[str, int], host: str, path: str, *, tls: bool, ca: Path | None = None,
        timeout: float = 5.0) -> Response:
    """GET `path` from `host` at `address` over a new connection; never raises for network or TLS errors."""
    with Session(address, host, tls=tls, ca=ca, timeout=timeout) as session:
        return session.get(path, {"Connection": "close"})
