"""A steady client load through the load balancer, run as its own process by the tests.

    python tests/load.py ADDRESS:PORT HOST CA_CERT OUT.json

Sends GET / over HTTPS (Host and SNI = HOST, certificate verified against CA_CERT), one
request after another, until SIGTERM or 120 s, then writes counts, failures and the
releases that answered to OUT.json.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from atl_pipeline.runtime.http import get  # noqa: E402

MAX_SECONDS = 120


def main(address: str, host: str, ca: str, out: str) -> None:
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    ip, port = address.rsplit(":", 1)
    ok, failures, releases = 0, [], Counter()
    deadline = time.monotonic() + MAX_SECONDS
    Path(out + ".started").write_text("")
    while not stopping and time.monotonic() < deadline:
        response = get((ip, int(port)), host, "/", tls=True, ca=Path(ca), timeout=10)
        if response.ok:
            ok += 1
            releases[json.loads(response.body)["release"]] += 1
        else:
            failures.append(response.error or f"HTTP {response.status}: {response.body[:200]!r}")
    Path(out).write_text(json.dumps({"ok": ok, "failed": len(failures), "failures": failures[:20],
                                     "releases": releases}))


if __name__ == "__main__":
    main(*sys.argv[1:])
