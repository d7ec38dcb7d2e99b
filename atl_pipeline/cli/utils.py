"""`atl utils`: helpers for operators and the Makefile."""

from __future__ import annotations

import argparse

from atl_pipeline.project import Project


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    instance = commands.add_parser("instance", help="create the project's Dagster instance and print its "
                                   "directory (the DAGSTER_HOME of `make dev`)")
    instance.set_defaults(run=_instance)


def _instance(args: argparse.Namespace) -> int:
    print(Project.from_env().ensure_instance())
    return 0
