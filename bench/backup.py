"""Backup and restore of the example with `--megabytes` (100) of volume data, through `atl` and the real
restic, into a repository on this machine's disk:

- **first backup**: the repository created and everything new;
- **unchanged backup**: the next one, with nothing changed (restic reads and skips what it has);
- **restore**: `.atl/` destroyed, then `atl utils restore` of the newest snapshot;
- **up after restore**: `atl infra up` on the restored state (Terraform plans no changes).

The volume's data is random, so restic can neither compress nor deduplicate it. Each backup also
reads back 10% of the repository's data (`check_subset`).

    python bench/backup.py [--megabytes 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.table import Table  # noqa: E402
from tests.conftest import copy_project, kill_stack  # noqa: E402

ATL = str(Path(sys.executable).with_name("atl"))
VOLUME = "    volumes: {data: /var/lib/api}\n"


def atl(project, *args: str) -> float:
    """Seconds `atl` took; exits when it failed."""
    started = time.monotonic()
    done = subprocess.run([ATL, *args], env={**os.environ, "ATL_PROJECT_DIR": str(project.root)},
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"atl {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return time.monotonic() - started


def main() -> None:
    options = argparse.ArgumentParser()
    options.add_argument("--megabytes", type=int, default=100)
    options.add_argument("--repeat", type=int, default=3)
    args = options.parse_args()

    os.environ["ATL_BENCH_RESTIC"] = "bench"
    root = Path(tempfile.mkdtemp(prefix="atl-bench-"))
    project = copy_project(root / "project")
    text = project.domains_file.read_text().replace("    health: {path: /healthz}\n",
                                                    "    health: {path: /healthz}\n" + VOLUME, 1)
    table = Table({"step": 20, "seconds": 8})
    figures: dict[str, list[float]] = {"first backup": [], "unchanged backup": [], "restore": [],
                                       "up after restore": []}
    try:
        for attempt in range(args.repeat):
            repository = root / f"restic-{attempt}"
            project.domains_file.write_text(text + f"\nbackup: {{repository: {repository}, "
                                            "password: env:ATL_BENCH_RESTIC}\n")
            atl(project, "infra", "up")
            (project.state_dir / "volumes" / "backend-api" / "data" / "blob").write_bytes(
                os.urandom(args.megabytes << 20))
            figures["first backup"].append(atl(project, "utils", "backup"))
            figures["unchanged backup"].append(atl(project, "utils", "backup"))
            atl(project, "infra", "down")
            shutil.rmtree(project.state_dir)
            figures["restore"].append(atl(project, "utils", "restore"))
            figures["up after restore"].append(atl(project, "infra", "up"))
            atl(project, "infra", "down")
            shutil.rmtree(project.state_dir)
        for step, seconds in figures.items():
            table.row(step, f"{statistics.median(seconds):.1f}")
        print(f"median of {args.repeat}, {args.megabytes} MB of volume data; each figure is a whole `atl` command")
    finally:
        kill_stack(project)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
