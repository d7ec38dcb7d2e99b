"""`atl utils logs`: the central log store (atl_pipeline.operations.logs), merged in time order."""

from __future__ import annotations

import argparse
import json
import sys

from atl_pipeline.cli.common import EXIT_FAILED, EXIT_OK, project_config, since_seconds
from atl_pipeline.operations.logs import LogError, follow, read
from atl_pipeline.project import Project


def register(commands: argparse._SubParsersAction) -> None:
    logs = commands.add_parser("logs", help="the logs of every replica, of Caddy's access log and of the pipeline, "
                               "from the collector's store, in time order")
    logs.add_argument("selection", nargs="?", metavar="SERVICE|DOMAIN",
                      help="one service's lines, or a domain's (its service's and Caddy's for it); default: all")
    logs.add_argument("--since", metavar="DURATION", help="only the last 90s, 10m, 2h, 1d")
    logs.add_argument("--grep", metavar="TEXT", help="only the lines whose message holds TEXT")
    logs.add_argument("--follow", "-f", action="store_true", help="then the new lines as they come, until Ctrl-C")
    logs.add_argument("--json", action="store_true", help="one JSON document a line")
    logs.description = ("Each line: time, source, release and replica, message. Exit 0; 1 when SERVICE|DOMAIN "
                        "is neither; 2 on a bad duration.")
    logs.set_defaults(run=_logs)


def _logs(args: argparse.Namespace) -> int:
    since = since_seconds(args.since)
    project = Project.from_env()
    config = project_config(project)
    try:
        for line in read(project, config, args.selection, since, args.grep):
            _print(line, args.json)
        if args.follow:
            for line in follow(project, config, args.selection, args.grep):
                _print(line, args.json)
    except LogError as error:
        print(error, file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _print(line, as_json: bool) -> None:
    print(json.dumps(line.fields) if as_json else line.text(), flush=True)
