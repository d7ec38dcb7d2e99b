"""`atl docs`: the generated pages of docs/reference/."""

from __future__ import annotations

import argparse
from pathlib import Path

from atl_pipeline.cli.common import EXIT_FAILED, EXIT_OK, UsageError
from atl_pipeline.config import load_config
from atl_pipeline.docs_build import build
from atl_pipeline.findings import ConfigError
from atl_pipeline.project import Project


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command = commands.add_parser("build", help="write docs/reference/: the domains.yml reference (from the "
                                  "schema), the current domains, the pipeline diagram (from the Dagster graph)")
    command.add_argument("--out", type=Path, help="default: docs/reference in the project")
    command.add_argument("--check", action="store_true", help="write nothing; exit 1 when a page is out of date")
    command.set_defaults(run=_build)


def _build(args: argparse.Namespace) -> int:
    project = Project.from_env()
    out = args.out or project.root / "docs" / "reference"
    try:
        loaded = load_config(project.domains_file, name=project.domains_file.name)
    except OSError as error:
        raise UsageError(f"cannot read {project.domains_file}: {error.strerror}") from None
    except ConfigError as error:
        print(error)
        return EXIT_FAILED
    stale = build(loaded, out, write=not args.check)
    for path in stale:
        print(f"{'out of date' if args.check else 'wrote'}: {path}")
    if not stale:
        print(f"{out}: up to date")
    return EXIT_FAILED if args.check and stale else EXIT_OK
