"""Probe every domain through the load balancer as a client would, and judge it against the SLOs.

Each probe is an HTTP(S) GET of the service's health path sent to the load balancer, with
the domain as Host and SNI and the certificate verified against the CA that issued it (on
hcloud, the CAs this machine trusts: the load balancer serves Let's Encrypt's). A
domain's probes share one keep-alive connection, as a browser's requests would.
Right after a deployment a domain may need a moment (a certificate being issued, health
checks finding new replicas): the first successful answer is awaited for a bounded settle
window, then a fixed number of probes measure the latency (one, for a domain the deployment
left as it was: nothing changed for it since the last check).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from atl_pipeline.runtime import http
from atl_pipeline.runtime.http import Frontend
from atl_pipeline.runtime.rolling import Domains, Services
from atl_pipeline.targets.outputs import DomainOutput
from atl_pipeline.timings import Timings

PROBES = 20
TIMEOUT_SECONDS = 5.0
SLO_AVERAGE_MS = 100.0  # the seed's key metrics: average response under 100 ms,
SLO_ERROR_RATE = 0.001  # and an error rate under 0.1%


@dataclass(frozen=True)
class DomainHealth:
    domain: str
    service: str
    probes: int
    failures: int
    latencies_ms: tuple[float, ...]  # of the successful probes
    error: str = ""  # the last failure
    requests: int = field(kw_only=True)  # every request sent: the settle window's, then the probes

    @property
    def ok(self) -> bool:
        return self.probes > 0 and self.failures == 0

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def probe_domain(frontend: Frontend, domain: str, ssl: bool, service: str, path: str, *,
                 probes: int = PROBES, settle: float = Timings.settle_seconds) -> DomainHealth:
    address = (frontend.address, frontend.https_port if ssl else frontend.http_port)
    with http.Session(address, domain, tls=ssl, ca=frontend.ca_cert, timeout=TIMEOUT_SECONDS) as session:
        deadline = time.monotonic() + settle
        first, sent = session.get(path), 1
        while not first.ok and time.monotonic() < deadline:
            time.sleep(0.2)
            first, sent = session.get(path), sent + 1
        if not first.ok:
            return DomainHealth(domain, service, 1, 1, (), _reason(first), requests=sent)
        latencies, failures, error = [], 0, ""
        for _ in range(probes):
            answer = session.get(path)
            if answer.ok:
                latencies.append(answer.seconds * 1000)
            else:
                failures, error = failures + 1, _reason(answer)
    return DomainHealth(domain, service, probes, failures, tuple(latencies), error, requests=sent + probes)


def probe_domains(frontend: Frontend, domains: Domains, services: Services, once: Collection[str] = (),
                  **options) -> list[DomainHealth]:
    """Every domain of Terraform's `domains` output, probed concurrently; those in `once` (which the
    deployment left as they were) with one probe, to see that they still answer."""
    def one(item: tuple[str, DomainOutput]) -> DomainHealth:
        name, domain = item
        return probe_domain(frontend, name, domain.ssl, domain.service, services[domain.service].health_path,
                            **options, **({"probes": 1} if name in once else {}))

    with ThreadPoolExecutor(max_workers=max(1, min(32, len(domains)))) as pool:
        return list(pool.map(one, sorted(domains.items())))


@dataclass(frozen=True)
class SloReport:
    average_ms: float
    error_rate: float

    def rows(self) -> list[tuple[str, str, str, str]]:
        """The key metrics as (metric, objective, measured, met) rows."""
        return [
            ("average response", f"< {SLO_AVERAGE_MS:.0f} ms", f"{self.average_ms:.1f} ms",
             "yes" if self.average_ms < SLO_AVERAGE_MS else "no"),
            ("error rate", f"< {SLO_ERROR_RATE:.1%}", f"{self.error_rate:.2%}",
             "yes" if self.error_rate < SLO_ERROR_RATE else "no"),
        ]

    @classmethod
    def of(cls, results: list[DomainHealth]) -> SloReport:
        latencies = [latency for result in results for latency in result.latencies_ms]
        probes = sum(result.probes for result in results)
        failures = sum(result.failures for result in results)
        return cls(statistics.fmean(latencies) if latencies else float("nan"), failures / probes if probes else 1.0)


def _reason(response: http.Response) -> str:
    return response.error or f"HTTP {response.status}"
