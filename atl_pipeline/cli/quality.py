"""`atl quality`: checks for CI and for a change before it is pushed."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from atl_pipeline.cli.common import EXIT_FAILED, EXIT_OK, UsageError
from atl_pipeline.findings import ConfigError, printable
from atl_pipeline.policy import PolicyError
from atl_pipeline.project import Project
from atl_pipeline.quality import fix, lint, policy_report
from atl_pipeline.terraform.render import RenderError


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
    rules = commands.add_parser("policy", help="the policy check of every plan: the Rego policies (shipped and "
                                "policies/*.rego) and Checkov on the rendered Terraform, without Terraform")
    rules.add_argument("file", nargs="?", type=Path, help="default: the project's domains.yml")
    rules.add_argument("--format", choices=("text", "json"), default="text", help="json: one document for CI")
    rules.description = ("Exit 0 when nothing is found (excepted findings are listed), 1 otherwise. Rules on "
                         "Terraform's plan need a plan: `atl infra plan` runs them.")
    rules.set_defaults(run=_policy)


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


def _policy(args: argparse.Namespace) -> int:
    project = Project.from_env()
    path = args.file or project.domains_file
    name = str(args.file) if args.file else path.name
    try:
        report = policy_report(path, project.templates_dir, name=name)
    except OSError as error:
        raise UsageError(f"cannot read {name}: {error.strerror}") from None
    except (ConfigError, PolicyError, RenderError) as error:
        print(error)
        return EXIT_FAILED
    if args.format == "json":
        print(json.dumps({"file": name, "passed": report.passed, "rules": report.rules, "checkov": report.checkov,
                          "violations": [dataclasses.asdict(f) for f in report.violations],
                          "excepted": [dataclasses.asdict(f) for f in report.excepted]}, indent=2))
    else:
        for finding in report.findings:
            print(printable(str(finding)))
        print(f"{name}: {len(report.violations)} violations, {len(report.excepted)} excepted; rules: "
              f"{', '.join(report.rules)}; Checkov: {report.checkov}")
    return EXIT_OK if report.passed else EXIT_FAILED
