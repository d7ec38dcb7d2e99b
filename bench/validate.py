"""Load and validate generated domains.yml files of 10 / 1,000 / 10,000 domains.

Prints, per size, the best of several runs: seconds to load (read, YAML, schema), to
validate (semantic rules), and in all, with domains per second. Goal: 10,000 domains
in under 1 s on one core.

    python bench/validate.py [--repeat N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

from atl_pipeline.config import load_config
from atl_pipeline.validation import validate

SIZES = (10, 1_000, 10_000)
SERVICES = 50


def generate(domains: int) -> str:
    lines = ["version: 1", "project: bench", "target:", "  kind: local",
             "  capacity: {cpu: '100000', memory: 100Ti}", "services:"]
    for s in range(SERVICES):
        lines += [f"  svc-{s}:", "    command: [python3, -m, app, --port, '{port}']",
                  f"    image: ghcr.io/allthingslinux/svc-{s}:1.0.{s}", f"    port: {10000 + s * 100}",
                  "    health: {path: /healthz}"]
    lines.append("domains:")
    for d in range(domains):
        lines += [f"  - name: \"d{d}.svc-{d % SERVICES}.allthingslinux.org\"", f"    service: svc-{d % SERVICES}",
                  "    ssl: true", "    monitoring: true", "    replicas: 3",
                  "    resources: {cpu: 500m, memory: 512Mi}"]
    return "\n".join(lines) + "\n"


def best_of(repeat: int, work) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'domains':>8} {'bytes':>10} {'load s':>9} {'validate s':>11} {'total s':>9} {'domains/s':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in SIZES:
            path = Path(tmp) / f"domains-{size}.yml"
            path.write_text(generate(size))
            load_s, loaded = best_of(args.repeat, partial(load_config, path))
            validate_s, validated = best_of(args.repeat, partial(validate, loaded))
            assert validated.ok, validated.findings[:3]
            total = load_s + validate_s
            print(f"{size:>8,} {path.stat().st_size:>10,} {load_s:>9.4f} {validate_s:>11.4f} {total:>9.4f} "
                  f"{size / total:>11,.0f}")


if __name__ == "__main__":
    main()
