"""The certificates the load balancer serves: inventoried, verified, renewed near expiry.

Each `ssl: true` domain is reached through the load balancer with its name as SNI (the
origin's certificate); the certificate must verify against the CA that issued it (chain and
name) and is read for its issuer and expiry. Where the target has public names (hcloud), the
certificate a client gets through the name's DNS answer is checked too: for a domain
Cloudflare proxies, that is the edge's, not the origin's. Caddy renews its certificates by itself two thirds into their
lifetime; a certificate found within `Timings.renew_within_days` anyway is renewed here: its files
are removed from Caddy's storage and Caddy is restarted (a reload keeps certificates in
its memory), so it issues anew. The restart interrupts serving for about a second, which
is why it is kept for this case.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from atl_pipeline.runtime.caddy import LoadBalancer
from atl_pipeline.runtime.http import Frontend

RENEW_TIMEOUT = 30.0
HANDSHAKES_AT_ONCE = 8  # TLS handshakes are mostly CPU on both ends: more threads than this only queue


@dataclass(frozen=True)
class ServedCertificate:
    domain: str
    valid: bool
    issuer: str = ""
    serial: str = ""
    not_after: datetime | None = None
    error: str = ""

    @property
    def days_left(self) -> float:
        if self.not_after is None:
            return float("nan")
        return (self.not_after - datetime.now(UTC)).total_seconds() / 86_400


def served_certificate(frontend: Frontend, domain: str, timeout: float = 5.0) -> ServedCertificate:
    """The certificate served for `domain`, verified (chain and name) against the frontend's CA."""
    context = ssl.create_default_context(cafile=str(frontend.ca_cert) if frontend.ca_cert else None)
    try:
        with socket.create_connection((frontend.address, frontend.https_port), timeout) as raw, \
                context.wrap_socket(raw, server_hostname=domain) as tls:
            certificate = tls.getpeercert()
    except (OSError, ssl.SSLError) as error:
        return ServedCertificate(domain, False, error=f"{type(error).__name__}: {error}")
    issuer = dict(pair for entry in certificate["issuer"] for pair in entry).get("commonName", "")
    not_after = datetime.fromtimestamp(ssl.cert_time_to_seconds(certificate["notAfter"]), UTC)
    return ServedCertificate(domain, True, issuer, certificate["serialNumber"], not_after)


def public_certificate(domain: str, resolve: Callable[[str], str] | None = None, port: int = 443,
                       ca: Path | None = None) -> ServedCertificate:
    """What a client gets through the public name: the address DNS gives for it (Cloudflare's
    edge for a proxied domain), TLS with the name as SNI, verified against the CAs this machine
    trusts (or `ca`)."""
    try:
        address = (resolve or resolve_name)(domain)
    except OSError as error:
        return ServedCertificate(domain, False, error=f"{domain} does not resolve: {error}")
    return served_certificate(Frontend(address, 80, port, ca), domain)


def resolve_name(domain: str) -> str:
    """The first address the system's resolver gives for `domain`."""
    return socket.getaddrinfo(domain, 443, type=socket.SOCK_STREAM)[0][4][0]


@dataclass(frozen=True)
class CertificateCheck:
    """The certificates of the ssl domains: as served at the origin (after any renewal), as seen
    through the public names, and which were renewed."""

    origin: list[ServedCertificate]
    public: list[ServedCertificate]
    renewed: list[str]
    within_days: float

    @property
    def bad(self) -> list[ServedCertificate]:
        """Those that do not verify, or expire within `within_days`."""
        return [c for c in [*self.origin, *self.public] if not c.valid or c.days_left < self.within_days]


def check_certificates(frontend: Frontend, names: list[str], within_days: float,
                       renew: Callable[[list[str]], list[ServedCertificate]] | None = None,
                       public: bool = False) -> CertificateCheck:
    """Each name's certificate at the origin, renewed with `renew` when due (where the target renews
    its certificates), and, with `public`, as a client gets it through the name."""
    with ThreadPoolExecutor(HANDSHAKES_AT_ONCE) as pool:
        served = dict(zip(names, pool.map(lambda name: served_certificate(frontend, name), names), strict=True))
        due = due_for_renewal(served.values(), within_days) if renew else []
        if due:
            served.update({cert.domain: cert for cert in renew(due)})
        seen = list(pool.map(public_certificate, names)) if public else []
    return CertificateCheck([served[name] for name in names], seen, due, within_days)


def due_for_renewal(served: Iterable[ServedCertificate], within_days: float) -> list[str]:
    """The domains whose valid certificate expires within `within_days`."""
    return [cert.domain for cert in served if cert.valid and cert.days_left < within_days]


def renew(lb: LoadBalancer, restart_caddy: Callable[[], None], domains: list[str]) -> list[ServedCertificate]:
    """Have Caddy issue new certificates for `domains`; returns what it serves afterwards."""
    before = {domain: served_certificate(lb.frontend, domain).serial for domain in domains}
    for domain in domains:
        shutil.rmtree(lb.data_dir / "certificates" / "local" / domain, ignore_errors=True)
    restart_caddy()
    deadline = time.monotonic() + RENEW_TIMEOUT
    while True:
        after = [served_certificate(lb.frontend, domain) for domain in domains]
        if all(cert.valid and cert.serial != before[cert.domain] for cert in after) or time.monotonic() > deadline:
            return after
        time.sleep(0.2)
