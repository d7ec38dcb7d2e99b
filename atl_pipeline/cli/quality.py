"""`atl quality`: checks for CI and for a change before it is pushed."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from atl_pipeline.cli.common import EXIT_FAILED, EXIT_OK, UsageError
from atl_pipeline.project import Project
from atl_pipeline.quality import fix, lint


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser("lint", help="schema and rules, the rendered Terraform (HCL read-back and "
                                "`terraform fmt -check`), and the YAML style of domains.yml")
    check.add_argument("file", nargs="?", type=Path, help="default: the project's domains.yml")
    check.add_argument("--fix", action="store_true", help="fix what is mechanical (whitespace, line ends, the "
                       "final newline) when the configuration reads the same afterwards")
    check.add_argument("--format", choices=("text", "json"), default="text", help="json: one document for CI")
    check.description = "Exit 0 when nothing is found, 1 otherwise."
    check.set_defaults(run=_lint)


def _lint(args: argparse.Namespace) -> int:
    project = Project.from_env()
    path = args.file or project.domains_file
    name = str(args.file) if args.file else path.name
    try:
        fixed = fix(path) if args.fix else 0
        findings = lint(path, project.templates_dir, project.state_dir / "terraform", name=name)
    except OSError as error:
        raise UsageError(f"cannot read {name}: {error.strerror}") from None
    if args.format == "json":
        print(json.dumps({"file": name, "fixed": fixed,
                          "findings": [dataclasses.asdict(finding) for finding in findings]}, indent=2))
    else:
        for finding in findings:
            print(finding)
        if fixed:
            print(f"{name}: fixed {fixed} findings")
        print(f"{name}: {len(findings)} findings" if findings else f"{name}: clean")
    return EXIT_FAILED if findings else EXIT_OK
