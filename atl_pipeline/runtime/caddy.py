"""Caddy as the load balancer, configured only through its admin API on loopback.

One route per domain (host match) to its service's whole port block, with active health
checks on the service's health path and passive ones (the circuit breaker); `ssl: true`
domains get a certificate from Caddy's internal CA and an HTTP to HTTPS redirect.

The upstreams are every port a replica of the service may listen on, in either slot, so
rolling a release or changing the replica count never changes Caddy's configuration:
the health checks find the replicas that answer. This matters because each configuration
load of Caddy 2.11 drops about one client connection that arrives during the swap
(measured: 7 to 10 failed requests over 10 loads under a steady load), so loads are kept
for changes of the routes themselves.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from atl_pipeline.errors import AtlError
from atl_pipeline.runtime.http import Frontend
from atl_pipeline.runtime.rolling import Domains

SECOND = 1_000_000_000  # Caddy durations in JSON are nanoseconds
DAY = 86_400 * SECOND
CERTIFICATE_LIFETIME = 60 * DAY  # Caddy renews at two thirds: 20 days before expiry, ahead of the 14-day alert
INTERMEDIATE_LIFETIME = 90 * DAY  # a certificate cannot outlive the intermediate that signs it
READY_TIMEOUT = 30.0
ACCESS_LOG = "access.log"
ACCESS_LOG_MB = 10  # Caddy rolls its access log at this size, keeping one; the collector has read it by then


class CaddyError(AtlError):
    """Caddy refused a configuration, or did not answer."""


class CaddyUnavailable(CaddyError):
    """Caddy's admin API did not answer (Caddy restarting, say): another attempt may succeed."""

    transient = True


@dataclass(frozen=True)
class LoadBalancer:
    address: str
    http_port: int
    https_port: int
    admin_port: int
    root: Path  # Caddy's home under .atl/runtime

    @property
    def admin_url(self) -> str:
        return f"http://{self.address}:{self.admin_port}"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def ca_cert(self) -> Path:
        """The root certificate of Caddy's local CA: what clients should trust."""
        return self.data_dir / "pki" / "authorities" / "local" / "root.crt"

    @property
    def frontend(self) -> Frontend:
        return Frontend(self.address, self.http_port, self.https_port, self.ca_cert)

    @property
    def access_log(self) -> Path:
        """Caddy's access log (JSON lines), beside the replicas' logs, where the log collector reads it."""
        return self.root.parent / "logs" / ACCESS_LOG


@dataclass(frozen=True)
class Route:
    """The domains of one service with one TLS setting, and every address a replica may listen on."""

    hosts: tuple[str, ...]
    ssl: bool
    upstreams: tuple[str, ...]  # host:port
    health_path: str


def hosts_by_route(domains: Domains) -> dict[tuple[str, bool], list[str]]:
    """The domains (Terraform's `domains` output) grouped by (service, ssl), a route each, in name order."""
    hosts: dict[tuple[str, bool], list[str]] = {}
    for name, domain in sorted(domains.items()):
        hosts.setdefault((domain.service, domain.ssl), []).append(name)
    return dict(sorted(hosts.items()))


def base_config(lb: LoadBalancer) -> dict:
    """What Caddy starts with: its admin endpoint and a CA that leaves the system trust store alone."""
    return {
        "admin": {"listen": f"{lb.address}:{lb.admin_port}"},
        # the active health checks of unused ports fail every second; that is expected, not news
        "logging": {"logs": {
            "default": {"exclude": ["http.handlers.reverse_proxy.health_checker.active", "http.log.access"]},
            "access": {"include": ["http.log.access"], "encoder": {"format": "json"}, "writer": {
                "output": "file", "filename": str(lb.access_log), "roll_size_mb": ACCESS_LOG_MB, "roll_keep": 1}}}},
        "storage": {"module": "file_system", "root": str(lb.data_dir)},
        "apps": {"pki": {"certificate_authorities": {"local": {
            "install_trust": False, "intermediate_lifetime": INTERMEDIATE_LIFETIME}}}},
    }


def caddy_config(lb: LoadBalancer, routes: list[Route]) -> dict:
    config = base_config(lb)
    secure = [route for route in routes if route.ssl]
    servers = {"http": {
        "listen": [f"{lb.address}:{lb.http_port}"], "logs": {},
        "routes": [_redirect(route, lb) if route.ssl else proxy(route) for route in routes] + [unknown_host()],
        "automatic_https": {"disable": True},
    }}
    if secure:
        servers["https"] = {
            "listen": [f"{lb.address}:{lb.https_port}"], "logs": {},
            "routes": [proxy(route) for route in secure] + [unknown_host()],
            "automatic_https": {"disable_redirects": True},
        }
        config["apps"]["tls"] = {"automation": {"policies": [
            {"subjects": [host for route in secure for host in route.hosts],
             "issuers": [{"module": "internal", "lifetime": CERTIFICATE_LIFETIME}]}]}}
    config["apps"]["http"] = {"http_port": lb.http_port, "https_port": lb.https_port, "servers": servers,
                              "metrics": {"per_host": True}}
    return config


def proxy(route: Route) -> dict:
    """The route's hosts to whichever of its upstreams answer their health path."""
    return {"match": [{"host": list(route.hosts)}], "terminal": True, "handle": [{
        "handler": "reverse_proxy",
        "upstreams": [{"dial": upstream} for upstream in route.upstreams],
        "health_checks": {
            "active": {"uri": route.health_path, "interval": SECOND, "timeout": 2 * SECOND},
            # a failure counts for one second: ports a new release reuses are soon trusted again
            "passive": {"max_fails": 2, "fail_duration": SECOND},
        },
        "load_balancing": {"selection_policy": {"policy": "round_robin"}, "retries": len(route.upstreams),
                           "try_duration": 5 * SECOND, "try_interval": SECOND // 1000},
    }]}


def _redirect(route: Route, lb: LoadBalancer) -> dict:
    location = f"https://{{http.request.host}}:{lb.https_port}{{http.request.uri}}"
    return {"match": [{"host": list(route.hosts)}], "terminal": True, "handle": [
        {"handler": "static_response", "status_code": 308, "headers": {"Location": [location]}}]}


def unknown_host() -> dict:
    return {"handle": [{"handler": "static_response", "status_code": 404, "body": "no site here\n"}]}


class CaddyAdmin:
    def __init__(self, url: str):
        self.url = url

    def config(self) -> dict | None:
        response = self._request("GET", "/config/", timeout=10)
        if response.status_code != 200:
            raise CaddyError(f"Caddy's admin API answered GET /config/ with {response.status_code}: "
                             f"{response.text.strip()[:2000]}")
        return response.json()

    def load(self, config: dict) -> None:
        response = self._request("POST", "/load", json=config, timeout=60)
        if response.status_code != 200:
            raise CaddyError(f"Caddy refused the configuration: {response.text.strip()[:2000]}")

    def _request(self, method: str, path: str, **options) -> requests.Response:
        try:
            return requests.request(method, f"{self.url}{path}", **options)
        except (requests.ConnectionError, requests.Timeout) as error:
            raise CaddyUnavailable(f"Caddy's admin API at {self.url} did not answer ({type(error).__name__}); "
                                   "supervisord restarts Caddy when it exits") from None

    def wait_ready(self, crashed: Callable[[], str | None] = lambda: None) -> None:
        """Until the admin API answers; CaddyError at once when `crashed` says why Caddy cannot start."""
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                self.config()
                return
            except CaddyError as error:
                if cause := crashed():
                    raise CaddyError(f"Caddy exits as it starts: {cause}") from None
                if time.monotonic() > deadline:
                    raise CaddyError(f"Caddy's admin API did not become ready within {READY_TIMEOUT:.0f} s: "
                                     f"{error}") from None
                time.sleep(0.1)


def last_error(log: Path) -> str | None:
    """The message of the last error Caddy logged (its log is JSON lines), with what to do when a
    port it needs is taken."""
    if not log.exists():
        return None
    with log.open("rb") as stream:
        stream.seek(max(0, log.stat().st_size - 64 * 1024))
        lines = stream.read().decode(errors="replace").splitlines()
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") == "error":
            message = str(entry.get("msg", ""))
            if "address already in use" in message:
                message += " (another program holds that port: stop it, or give the target another port)"
            return message
    return None
