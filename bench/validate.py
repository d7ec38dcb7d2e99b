"""Load and validate generated domains.yml files of 10 / 1,000 / 10,000 domains, then the
worst file of each class of hostile input.

The first table prints, per size, the best of several runs: seconds to load (read, YAML,
schema), to validate (semantic rules), and in all, with domains per second. Goal: 10,000
domains in under 1 s on one core.

The second runs `atl infra validate` on each worst case (tests/worst_cases.py, each up to
the 8 MiB limit) in a child process: its exit code, seconds, peak resident memory and
bytes of output. Goal: every one answered (exit 1 or 2, never a traceback) in under 5 s
and 512 MiB, with output bounded.

    python bench/validate.py [--repeat N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from atl_pipeline.config import load_config  # noqa: E402
from atl_pipeline.validation import validate  # noqa: E402
from tests.worst_cases import WORST_CASES, atl  # noqa: E402

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
        print()
        worst_cases(Path(tmp))


def worst_cases(folder: Path) -> None:
    print(f"{'worst case':<32} {'MiB':>5} {'exit':>4} {'seconds':>8} {'peak MiB':>9} {'output B':>9}")
    for name, make in WORST_CASES.items():
        path = folder / f"{make.__name__}.yml"
        path.write_text(make())
        answer = atl("infra", "validate", str(path))
        print(f"{name:<32} {path.stat().st_size / 2**20:>5.1f} {answer.code:>4} {answer.seconds:>8.2f} "
              f"{answer.peak_bytes / 2**20:>9.0f} {len(answer.output.encode()):>9,}")


if __name__ == "__main__":
    main()
