"""The sample service's drain (what a replica must do on SIGTERM so that a roll loses no request),
and the release that degrades after its deployment."""

from __future__ import annotations

import http.client
import signal
import subprocess
import sys
import time

import pytest

from tests.ports import free_port

pytestmark = pytest.mark.slow  # the sample service as a process


def test_a_replica_told_to_stop_serves_its_open_connections_until_the_proxy_has_moved_on():
    """After SIGTERM its health check fails at once, but a request on a connection the proxy keeps
    open is still answered (then the connection closes): closed at once, that connection would
    fail the POST the proxy may be sending on it."""
    port = free_port()
    replica = subprocess.Popen([sys.executable, "-m", "atl_pipeline.sample_service", "--port", str(port)])
    try:
        pooled = connect(port)
        pooled.request("GET", "/")
        assert pooled.getresponse().read()

        replica.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # longer than the server takes to stop without its linger
        health = connect(port)
        health.request("GET", "/healthz")
        assert health.getresponse().status == 503
        pooled.request("POST", "/", body=b"form=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
        answer = pooled.getresponse()
        assert (answer.status, answer.getheader("Connection")) == (200, "close")
        assert replica.wait(timeout=10) == 0
    finally:
        replica.kill()


def test_a_release_told_to_fail_after_n_requests_fails_them_while_its_health_check_stays_green():
    port = free_port()
    replica = subprocess.Popen([sys.executable, "-m", "atl_pipeline.sample_service", "--port", str(port),
                                "--fail-after", "3"])
    try:
        client = connect(port)
        statuses = []
        for path in ["/", "/healthz", "/", "/", "/", "/healthz", "/"]:
            client.request("GET", path)
            response = client.getresponse()
            response.read()
            statuses.append(response.status)
        assert statuses == [200, 200, 200, 200, 500, 200, 500]
        client.request("GET", "/metrics")
        assert 'atl_sample_requests_total{path="/",code="500"} 2' in client.getresponse().read().decode()
    finally:
        replica.kill()


def connect(port: int) -> http.client.HTTPConnection:
    for _ in range(100):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.connect()
            return connection
        except ConnectionRefusedError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")
