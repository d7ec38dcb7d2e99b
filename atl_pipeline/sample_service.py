"""The sample service the example domains.yml runs: one process per replica.

    python -m atl_pipeline.sample_service --port PORT [--unhealthy-for-host HOST] [--fail-after N]
        [--log-every SECONDS] [--log-bytes-per-second N]

`/` names the service, release and replica (from ATL_SERVICE, ATL_RELEASE, ATL_REPLICA,
which the local runtime sets); `/slow?ms=N` answers the same after N milliseconds (at most
MAX_SLOW_MS: a request held open across a roll), to a GET or a POST (a form, which no proxy
may send twice); `/healthz` answers 200, or 503 to requests
for HOST (a release broken for one site, for tests: 127.0.0.1 is the runtime's own health
gate); `/metrics` is in Prometheus text format. With `--fail-after N`, `/` answers 500 once
the replica has answered it N times, while `/healthz` stays 200: a release that passes the
deployment's health gate and degrades later, as real regressions do. It writes one line to
its output when it listens; with `--log-every`, a numbered `tick` line each period; with
`--log-bytes-per-second`, that much output every second (a service flooding its log).

On SIGTERM it drains: for LINGER_SECONDS it goes on serving, answering `/healthz` with 503
and closing each connection after its response, so that the load balancer's health checks
stop choosing it while no connection it holds open is cut; then it stops accepting
connections, finishes the requests in flight, and exits. Closing an idle keep-alive
connection at once would race a request the proxy is just sending on it, which a POST
cannot survive (no proxy sends one twice).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DRAIN_SECONDS = 10.0
LINGER_SECONDS = 2.0  # two of Caddy's health-check intervals: it has stopped choosing this replica
MAX_SLOW_MS = 5000
MAX_BODY = 64 * 1024


class Service:
    def __init__(self, unhealthy_for_host: str | None, fail_after: int | None = None):
        self.identity = {key: os.environ.get(f"ATL_{key.upper()}", "") for key in ("service", "release", "replica")}
        self.unhealthy_for_host = unhealthy_for_host
        self.fail_after = fail_after
        self.answered = 0  # requests for / answered so far
        self.started = time.time()
        self.lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.seconds = 0.0
        self.in_flight = 0
        self.draining = False

    def healthy_for(self, host: str) -> bool:
        return not self.draining and host.rsplit(":", 1)[0] != self.unhealthy_for_host

    def degraded(self) -> bool:
        """Whether this request for / fails: the replica has answered `fail_after` of them already."""
        with self.lock:
            self.answered += 1
            return self.fail_after is not None and self.answered > self.fail_after

    def record(self, path: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[(path, status)] += 1
            self.seconds += seconds

    def metrics(self) -> str:
        labels = ",".join(f'{key}="{value}"' for key, value in self.identity.items())
        lines = ["# TYPE atl_sample_info gauge", f"atl_sample_info{{{labels}}} 1",
                 "# TYPE atl_sample_start_time_seconds gauge", f"atl_sample_start_time_seconds {self.started}",
                 "# TYPE atl_sample_requests_total counter"]
        with self.lock:
            lines += [f'atl_sample_requests_total{{path="{path}",code="{status}"}} {count}'
                      for (path, status), count in sorted(self.requests.items())]
            lines += ["# TYPE atl_sample_request_seconds_total counter",
                      f"atl_sample_request_seconds_total {self.seconds}",
                      "# TYPE process_cpu_seconds_total counter",  # what the autoscaler reads for cpu_per_replica
                      f"process_cpu_seconds_total {time.process_time()}"]
        return "\n".join(lines) + "\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024  # headers and body leave in one write, flushed after each request
    service: Service

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        """A form sent: read, then answered as a GET of the same path (`/slow`, say)."""
        self.rfile.read(min(int(self.headers.get("Content-Length") or 0), MAX_BODY))
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        start = time.perf_counter()
        with self.service.lock:
            self.service.in_flight += 1
        try:
            path, _, query = self.path.partition("?")
            if path == "/slow":
                time.sleep(min(_milliseconds(query), MAX_SLOW_MS) / 1000)
                path = "/"
            if path == "/healthz":
                status, body, kind = (200, "ok\n", "text/plain") if self.service.healthy_for(
                    self.headers.get("Host", "")) else (503, "unhealthy\n", "text/plain")
            elif path == "/metrics":
                status, body, kind = 200, self.service.metrics(), "text/plain; version=0.0.4"
            elif path == "/" and self.service.degraded():
                status, body, kind = 500, "degraded\n", "text/plain"
            elif path == "/":
                status, body, kind = 200, json.dumps(self.service.identity) + "\n", "application/json"
            else:
                status, body, kind = 404, "not found\n", "text/plain"
            self._send(status, body, kind)
            self.service.record(path if status != 404 else "other", status, time.perf_counter() - start)
        finally:
            with self.service.lock:
                self.service.in_flight -= 1

    def _send(self, status: int, body: str, kind: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        if self.service.draining:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet: Caddy logs requests
        pass


def _milliseconds(query: str) -> int:
    """`ms=N` of a query string; 0 when absent or not a number."""
    value = dict(pair.partition("=")[::2] for pair in query.split("&")).get("ms", "")
    return int(value) if value.isascii() and value.isdigit() else 0


def serve(port: int, unhealthy_for_host: str | None, fail_after: int | None = None) -> None:
    threading.stack_size(512 * 1024)  # many threads fit under the runtime's address-space limit
    service = Service(unhealthy_for_host, fail_after)
    handler = type("BoundHandler", (Handler,), {"service": service})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True

    def stop(signum, frame) -> None:
        service.draining = True
        threading.Timer(LINGER_SECONDS, server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    server.serve_forever()
    server.socket.close()
    deadline = time.monotonic() + DRAIN_SECONDS
    while service.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--unhealthy-for-host", metavar="HOST", help="answer /healthz for HOST with 503")
    parser.add_argument("--slow-start", metavar="SECONDS", type=float, default=0.0,
                        help="wait this long before listening, as a service warming up would")
    parser.add_argument("--fail-after", metavar="N", type=_count,
                        help="answer / with 500 after answering it N times (/healthz stays 200)")
    parser.add_argument("--log-every", metavar="SECONDS", type=float, help="write a numbered line each period")
    parser.add_argument("--log-bytes-per-second", metavar="N", type=int, help="write N bytes of lines a second")
    args = parser.parse_args()
    time.sleep(args.slow_start)
    if args.log_every or args.log_bytes_per_second:
        threading.Thread(target=_talk, args=(args.log_every, args.log_bytes_per_second), daemon=True).start()
    print(f"listening on 127.0.0.1:{args.port}", flush=True)
    serve(args.port, args.unhealthy_for_host, args.fail_after)


def _talk(every: float | None, rate: int | None) -> None:
    """Numbered lines each `every` seconds, or `rate` bytes of them each second."""
    line = "flood " + "x" * 93 + "\n"  # 100 bytes
    for number in itertools.count(1):
        if every:
            print(f"tick {number}", flush=True)
            time.sleep(every)
        else:
            started = time.monotonic()
            sys.stdout.write(line * (rate // len(line)))
            sys.stdout.flush()
            time.sleep(max(0.0, 1 - (time.monotonic() - started)))


def _count(value: str) -> int:
    if not (value.isascii() and value.isdigit()):
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of requests, 0 or more")
    return int(value)


if __name__ == "__main__":
    main()
