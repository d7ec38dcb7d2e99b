"""Client load through the load balancer (or straight to a replica), as its own process.

    python bench/load.py steady ADDRESS:PORT HOST CA OUT.json
        one request after another, each on a new HTTPS connection (Host and SNI = HOST,
        verified against CA), 10 ms apart after a failure, until SIGTERM or 120 s; writes
        counts, failures, the releases that answered and `served_again_at` (when a request
        succeeded after a failed one, in time.monotonic(), which all processes share) to
        OUT.json.
    python bench/load.py held ADDRESS:PORT HOST CA OUT.json CONCURRENCY MILLISECONDS
        CONCURRENCY clients on keep-alive HTTPS connections, each posting a form to
        /slow?ms=MILLISECONDS (held open that long; a POST, which the load balancer may not
        retry once sent) one after another, until SIGTERM or 120 s; writes OUT.json as
        `steady` does.
    python bench/load.py throughput ADDRESS:PORT HOST CA|- CONCURRENCY SECONDS
        CONCURRENCY threads on keep-alive connections (HTTPS, or HTTP when CA is -) for
        SECONDS; prints requests, failures, requests/s, p50 and p99 in ms as JSON.
"""

from __future__ import annotations

import json
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from atl_pipeline.runtime.http import connection, get  # noqa: E402

MAX_SECONDS = 120
FAILURE_PAUSE = 0.01  # a client pauses after a failure rather than hammer a refused port


def steady(address: str, host: str, ca: str, out: str) -> None:
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    ip, port = address.rsplit(":", 1)
    ok, failures, releases, served_again_at = 0, [], Counter(), []
    deadline = time.monotonic() + MAX_SECONDS
    Path(out + ".started").write_text("")
    failing = False
    while not stopping and time.monotonic() < deadline:
        response = get((ip, int(port)), host, "/", tls=True, ca=Path(ca), timeout=10)
        if response.ok:
            ok += 1
            releases[json.loads(response.body)["release"]] += 1
            if failing:
                served_again_at.append(time.monotonic())
        else:
            failures.append(response.error or f"HTTP {response.status}: {response.body[:200]!r}")
            time.sleep(FAILURE_PAUSE)
        failing = not response.ok
    Path(out).write_text(json.dumps({"ok": ok, "failed": len(failures), "failures": failures[:20],
                                     "releases": releases, "served_again_at": served_again_at}))


def held(address: str, host: str, ca: str, out: str, concurrency: str, milliseconds: str) -> None:
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    ip, port = address.rsplit(":", 1)
    lock = threading.Lock()
    ok, failures, releases = [0], [], Counter()
    deadline = time.monotonic() + MAX_SECONDS

    def client() -> None:
        link = connection((ip, int(port)), host, tls=True, ca=Path(ca), timeout=10)
        while not stopping and time.monotonic() < deadline:
            try:
                link.request("POST", f"/slow?ms={milliseconds}", body=b"comment=hello",
                             headers={"Host": host, "Content-Type": "application/x-www-form-urlencoded"})
                response = link.getresponse()
                body = response.read()
                error = "" if response.status == 200 else f"HTTP {response.status}: {body[:200]!r}"
            except OSError as failure:
                error, body = f"{type(failure).__name__}: {failure}", b""
                link.close()
            with lock:
                if error:
                    failures.append(error)
                else:
                    ok[0] += 1
                    releases[json.loads(body)["release"]] += 1
            if error:
                time.sleep(FAILURE_PAUSE)

    clients = [threading.Thread(target=client) for _ in range(int(concurrency))]
    for thread in clients:
        thread.start()
    Path(out + ".started").write_text("")
    for thread in clients:
        thread.join()
    Path(out).write_text(json.dumps({"ok": ok[0], "failed": len(failures), "failures": failures[:20],
                                     "releases": releases}))


def throughput(address: str, host: str, ca: str, concurrency: str, seconds: str) -> None:
    ip, port = address.rsplit(":", 1)
    latencies: list[float] = []
    failed = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + float(seconds)

    def worker() -> None:
        client = connection((ip, int(port)), host, tls=ca != "-", ca=None if ca == "-" else Path(ca), timeout=10)
        mine, errors = [], 0
        while time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                client.request("GET", "/", headers={"Host": host})
                response = client.getresponse()
                response.read()
                if response.status == 200:
                    mine.append(time.perf_counter() - start)
                else:
                    errors += 1
            except OSError:
                errors += 1
                client.close()
        with lock:
            latencies.extend(mine)
            failed[0] += errors

    threads = [threading.Thread(target=worker) for _ in range(int(concurrency))]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    print(json.dumps({"requests": len(latencies), "failed": failed[0], "rps": len(latencies) / elapsed,
                      "p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000}))


if __name__ == "__main__":
    {"steady": steady, "held": held, "throughput": throughput}[sys.argv[1]](*sys.argv[2:])
