"""`atl infra`: validate, deploy and inspect the infrastructure declared in domains.yml."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from atl_pipeline.cli.common import EXIT_FAILED, EXIT_OK, UsageError
from atl_pipeline.config import LoadedConfig, load_config
from atl_pipeline.findings import ConfigError
from atl_pipeline.project import Project
from atl_pipeline.report import DOMAIN_HEADERS, domain_rows, text_table
from atl_pipeline.runtime.local import deployed_runtime
from atl_pipeline.runtime.status import status
from atl_pipeline.validation import ValidatedConfig, validate


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("validate", help="check domains.yml; print file:line:col: message per finding")
    check.add_argument("file", nargs="?", type=Path, help="default: the project's domains.yml")
    check.set_defaults(run=_validate)

    show = commands.add_parser("config", help="print the table of domains")
    show.add_argument("file", nargs="?", type=Path, help="default: the project's domains.yml")
    show.set_defaults(run=_config)

    up = commands.add_parser("up", help="run every stage as one Dagster run in the project's instance")
    up.add_argument("-f", "--file", type=Path, help="the domains.yml to deploy (default: the project's)")
    up.add_argument("--approve-destroy", action="store_true",
                    help="let this run apply a plan that deletes or replaces resources")
    up.set_defaults(run=_up)

    status = commands.add_parser("status", help="what runs on the local target, and whether it answers")
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    status.set_defaults(run=_status)

    status.description = "Exit 0 when every deployed domain answers, 1 otherwise (or when nothing is deployed)."

    down = commands.add_parser("down", help="stop every service and the load balancer; keep the state, "
                               "so the next `up` restores them")
    down.set_defaults(run=_down)


def _validate(args: argparse.Namespace) -> int:
    validated = _load_and_validate(args.file)
    if validated is None:
        return EXIT_FAILED
    config = validated.loaded.config
    print(f"{validated.loaded.source.name}: valid ({len(config.domains)} domains, "
          f"{len(config.services)} services)")
    return EXIT_OK


def _config(args: argparse.Namespace) -> int:
    validated = _load_and_validate(args.file)
    if validated is None:
        return EXIT_FAILED
    print(text_table(DOMAIN_HEADERS, domain_rows(validated.loaded.config)))
    return EXIT_OK


def _load_and_validate(file: Path | None) -> ValidatedConfig | None:
    """The validated configuration, or None after printing every finding."""
    findings = []
    try:
        validated = validate(_load(file))
        findings = list(validated.findings)
    except ConfigError as error:
        findings = error.findings
    for finding in findings:
        print(finding)
    return None if findings else validated


def _load(file: Path | None) -> LoadedConfig:
    path = file or Project.from_env().domains_file
    name = str(file) if file else _relative(path)
    try:
        return load_config(path, name=name)
    except OSError as error:
        raise UsageError(f"cannot read {name}: {error.strerror}") from None


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _up(args: argparse.Namespace) -> int:
    # Dagster loads slowly: only `up` needs it.
    from atl_pipeline.orchestration.assets import APPROVE_DESTROY_TAG
    from atl_pipeline.orchestration.runner import run_deploy

    if args.file is not None and not args.file.is_file():
        raise UsageError(f"cannot read {args.file}: no such file")
    tags = {APPROVE_DESTROY_TAG: "true"} if args.approve_destroy else {}
    outcome = run_deploy(Project.from_env(), args.file, on_stage=_print_stage, tags=tags, on_wait=print)
    print(f"run {outcome.run_id}: {outcome.status}")
    return EXIT_OK if outcome.success else EXIT_FAILED


def _status(args: argparse.Namespace) -> int:
    report = status(deployed_runtime(Project.from_env()))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        lb = report["load_balancer"]
        state = "running" if lb["running"] else "stopped"
        print(f"load balancer {lb['address']} http {lb['http_port']} https {lb['https_port']} ({state}); "
              f"trust {lb['ca_cert']}")
        print(text_table(("domain", "url", "service", "healthy"),
                         [(d["name"], d["url"], d["service"], "yes" if d["healthy"] else "NO")
                          for d in report["domains"]]))
        print(text_table(("service", "release", "replicas"),
                         [(s["name"], s["release"], " ".join(f"{r['port']}:{r['state'].lower()}"
                                                             for r in s["replicas"]) or "none")
                          for s in report["services"]]))
    healthy = bool(report["domains"]) and all(d["healthy"] for d in report["domains"])
    return EXIT_OK if healthy else EXIT_FAILED


def _down(args: argparse.Namespace) -> int:
    runtime = deployed_runtime(Project.from_env())
    running = runtime.supervisor.is_running()
    runtime.stop()
    print("stopped every service and the load balancer; `atl infra up` brings them back" if running
          else "nothing was running")
    return EXIT_OK


def _print_stage(event) -> None:
    label = {"ok": "ok", "failed": "FAIL", "skipped": "skip", "check failed": "FAIL"}[event.status]
    seconds = f"{event.seconds:6.2f}s" if event.seconds is not None else " " * 7
    detail, *more = (event.detail or event.status).splitlines() or [""]
    print(f"{label:<5} {event.stage:<32} {seconds}  {detail}")
    for line in more:
        print(f"{'':<47}{line}")
    sys.stdout.flush()
