"""`atl utils`: helpers for operators and the Makefile."""

from __future__ import annotations

import argparse
from pathlib import Path

from atl_pipeline.cli.common import EXIT_FAILED, EXIT_OK, UsageError
from atl_pipeline.config.edit import EditError, set_enabled
from atl_pipeline.findings import ConfigError
from atl_pipeline.project import Project


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    instance = commands.add_parser("instance", help="create the project's Dagster instance and print its "
                                   "directory (the DAGSTER_HOME of `make dev`)")
    instance.set_defaults(run=_instance)
    for verb, enabled in (("enable", True), ("disable", False)):
        command = commands.add_parser(verb, help=f"set `enabled: {str(enabled).lower()}` on a domain in "
                                      "domains.yml, keeping its comments and order; the next deploy applies it")
        command.add_argument("domain")
        command.add_argument("-f", "--file", type=Path, help="default: the project's domains.yml")
        command.set_defaults(run=_set_enabled, enabled=enabled)


def _instance(args: argparse.Namespace) -> int:
    print(Project.from_env().ensure_instance())
    return EXIT_OK


def _set_enabled(args: argparse.Namespace) -> int:
    path = args.file or Project.from_env().domains_file
    verb = "enabled" if args.enabled else "disabled"
    try:
        changed, line = set_enabled(path, args.domain, args.enabled)
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    except (ConfigError, EditError) as error:
        print(error)
        return EXIT_FAILED
    if not changed:
        print(f"{args.domain} is already {verb} ({path.name}:{line})")
    else:
        print(f"{args.domain} {verb} in {path.name}:{line}; the next deploy applies it"
              + ("" if args.enabled else " (removing it from Terraform needs --approve-destroy)"))
    return EXIT_OK
