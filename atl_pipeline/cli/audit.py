"""`atl utils audit`: the audit trail (atl_pipeline.operations.audit), oldest first, checked link by link."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from dagster import DagsterInstance

from atl_pipeline.cli.common import EXIT_FAILED, EXIT_OK, since_seconds
from atl_pipeline.operations import audit
from atl_pipeline.project import Project
from atl_pipeline.report import AUDIT_COLUMNS, audit_rows, text_table


def register(commands: argparse._SubParsersAction) -> None:
    trail = commands.add_parser("audit", help="who changed what runs, when, and how it ended: the console's "
                                "users, the CLI, git pushes, schedules and sensors")
    trail.add_argument("--since", metavar="DURATION", help="only the last 90s, 10m, 2h, 1d")
    trail.add_argument("--json", action="store_true", help="one JSON document a line, as recorded")
    trail.description = ("Exit 0; 1 when the trail's chain of digests is broken (a record changed, removed or "
                         "put in between), or the file lacks a head recorded outside it (in the Dagster instance or "
                         "the log store: its end cut off, or the file rewritten), each said on stderr; 2 on a bad "
                         "duration.")
    trail.set_defaults(run=_audit)


def _audit(args: argparse.Namespace) -> int:
    since = since_seconds(args.since)
    project = Project.from_env()
    found = [record for _, record in audit.records(project, datetime.fromtimestamp(since, UTC) if since else None)]
    if args.json:
        for record in found:
            print(json.dumps(record, sort_keys=True))
    else:
        print(text_table(AUDIT_COLUMNS, audit_rows(found)) if found else "no records")
    anchors = audit.anchors(project, _instance(project))
    problems = audit.verify(project, anchors)
    print(f"compared with {len(anchors)} heads recorded outside the file", file=sys.stderr)
    for problem in problems:
        print(f"{audit.path(project)}: {problem}", file=sys.stderr)
    return EXIT_FAILED if problems else EXIT_OK


def _instance(project: Project) -> DagsterInstance | None:
    """The project's Dagster instance, when it has one."""
    return DagsterInstance.from_config(str(project.ensure_instance())) if project.dagster_home.is_dir() else None
