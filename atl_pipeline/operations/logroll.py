"""What rsyslog runs when a file of the log store reaches its size: the standard library only, so
that it starts in milliseconds (a flooding source rolls its file every second or so)."""

import time
from pathlib import Path


def roll(path: str, keep: int, retention_seconds: float) -> None:
    """The file becomes `.1`, each rolled one moves up, and those past `keep` or the retention go."""
    current = Path(path)
    for number in range(keep, 0, -1):
        rolled = current.with_name(f"{current.name}.{number}")
        if rolled.exists():
            if number == keep or time.time() - rolled.stat().st_mtime > retention_seconds:
                rolled.unlink()
            else:
                rolled.rename(current.with_name(f"{current.name}.{number + 1}"))
    if current.exists():
        current.rename(current.with_name(f"{current.name}.1"))
