"""Start one replica from its JSON spec: set its limits, then become its program.

    python -m atl_pipeline.runtime.launch SPEC.json

The memory limit is RLIMIT_AS (address space); the cpu share becomes a nice value.
"""

from __future__ import annotations

import json
import os
import resource
import sys

from atl_pipeline import processes


def main(spec_path: str) -> None:
    with open(spec_path) as stream:
        spec = json.load(stream)
    resource.setrlimit(resource.RLIMIT_AS, (spec["memory_bytes"], spec["memory_bytes"]))
    os.nice(spec["nice"])
    processes.become(spec["argv"], {**os.environ, **spec["env"]})  # supervisord's environment


if __name__ == "__main__":
    main(sys.argv[1])
