"""How many log lines a second the collector takes with less than a second's delay to
`atl utils logs --follow`: the example deployed, then, for each rate, lines written for `--seconds`
(5) into a replica's output file at that rate, each carrying the time it was written, while
`atl utils logs backend-api --follow --json` (a separate process, as an operator runs it) prints
them. For each rate: the lines written and seen, and the delay from written to printed (median,
95th percentile, worst).

    python bench/logs.py [--rates 1000,10000,30000,60000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from atl_pipeline.runtime.local import deployed_runtime  # noqa: E402
from bench.table import Table  # noqa: E402
from tests.conftest import copy_project, kill_stack  # noqa: E402

ATL = str(Path(sys.executable).with_name("atl"))


def write_at(path: Path, rate: int, seconds: float, tag: str) -> int:
    """Lines `<tag> <n> <time written>` at `rate` a second, in batches every 10 ms; returns how many."""
    written, started = 0, time.monotonic()
    with path.open("a") as output:
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate)
            now = time.time()
            output.write("".join(f"{tag} {n} {now:.6f}\n" for n in range(written, due)))
            output.flush()
            written = due
            time.sleep(0.01)
    return written


def read_delays(follower: subprocess.Popen, delays: list[float]) -> None:
    """For each line the follower prints, the seconds since it was written."""
    for line in follower.stdout:
        delays.append(time.time() - float(json.loads(line)["message"].split()[2]))


def main() -> None:
    options = argparse.ArgumentParser()
    options.add_argument("--rates", default="1000,10000,30000,60000")
    options.add_argument("--seconds", type=float, default=5.0)
    args = options.parse_args()

    root = Path(tempfile.mkdtemp(prefix="atl-bench-"))
    project = copy_project(root / "project")
    env = {**os.environ, "ATL_PROJECT_DIR": str(project.root)}
    table = Table({"lines/s": 8, "written": 8, "seen": 8, "p50 s": 6, "p95 s": 6, "worst s": 7})
    try:
        subprocess.run([ATL, "infra", "up"], env=env, check=True, capture_output=True)
        output = next(deployed_runtime(project).supervisor.logs.glob("svc_backend-api_*_0.log"))
        for rate in (int(r) for r in args.rates.split(",")):
            tag = f"bench{rate}"
            follower = subprocess.Popen([ATL, "utils", "logs", "backend-api", "--follow", "--json", "--grep", tag],
                                        env=env, stdout=subprocess.PIPE, text=True)
            delays: list[float] = []
            reader = threading.Thread(target=read_delays, args=(follower, delays), daemon=True)
            reader.start()
            time.sleep(3)  # the follower has read what was stored before
            written = write_at(output, rate, args.seconds, tag)
            time.sleep(3)
            follower.terminate()
            follower.wait()
            reader.join(5)
            ordered = sorted(delays)
            percentile = ordered[int(len(ordered) * 0.95) - 1] if ordered else float("nan")
            table.row(rate, written, len(delays), f"{statistics.median(ordered):.2f}" if ordered else "-",
                      f"{percentile:.2f}", f"{ordered[-1]:.2f}" if ordered else "-")
    finally:
        kill_stack(project)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
