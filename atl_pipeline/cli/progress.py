"""How `atl` shows a run: a live line per stage in a terminal, plain lines otherwise, colour
only on a terminal (and never with NO_COLOR), nothing but one JSON document with --json."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # the Dagster layer is imported only by the commands that run
    from atl_pipeline.orchestration.runner import RunOutcome, StageEvent

LABELS = {"ok": ("ok", "32"), "failed": ("FAIL", "31"), "check failed": ("FAIL", "31"), "skipped": ("skip", "33"),
          "needs approval": ("HOLD", "33")}
INDENT = 47


class Progress:
    """Receives each stage's start (`start`, as `on_start`) and end (as `on_stage`) and prints them."""

    def __init__(self, *, as_json: bool = False, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self.as_json = as_json
        self.live = not as_json and self.stream.isatty() and os.environ.get("TERM") != "dumb"
        self.colour = self.live and "NO_COLOR" not in os.environ
        self.events: list[StageEvent] = []

    def start(self, stage: str) -> None:
        if self.live:
            self.stream.write(f"\r\033[K{'...':<5} {stage}")
            self.stream.flush()

    def __call__(self, event: StageEvent) -> None:
        self.events.append(event)
        if self.as_json:
            return
        label, colour = LABELS[event.status]
        seconds = f"{event.seconds:6.2f}s" if event.seconds is not None else " " * 7
        detail, *more = (event.detail or event.status).splitlines() or [""]
        start = "\r\033[K" if self.live else ""
        self.stream.write(f"{start}{self.paint(f'{label:<5}', colour)} {event.stage:<32} {seconds}  {detail}\n")
        for line in more:
            self.stream.write(f"{'':<{INDENT}}{line}\n")
        self.stream.flush()

    def paint(self, text: str, colour: str) -> str:
        return f"\033[{colour}m{text}\033[0m" if self.colour else text

    def message(self, text: str) -> None:
        """A line for the operator (never in JSON output)."""
        if not self.as_json:
            print(text, file=self.stream, flush=True)

    def finish(self, outcome: RunOutcome, **extra: object) -> None:
        """The run's last line, or the JSON document: run id, status, each stage, and `extra`."""
        if self.as_json:
            json.dump({"run_id": outcome.run_id, "status": outcome.status, "success": outcome.success,
                       "stages": [{"stage": e.stage, "status": e.status, "seconds": e.seconds, "detail": e.detail}
                                  for e in self.events], **extra}, self.stream, indent=2)
            self.stream.write("\n")
        else:
            status = self.paint(outcome.status, "32" if outcome.success else "31")
            held = " (held: the plan waits for approval)" if outcome.needs_approval else ""
            self.stream.write(f"run {outcome.run_id}: {status}{held}\n")
        self.stream.flush()
