"""`atl infra`: validate, deploy and inspect the infrastructure declared in domains.yml."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

from atl_pipeline.cli.common import EXIT_FAILED, EXIT_OK, UsageError, project_config
from atl_pipeline.cli.progress import Progress
from atl_pipeline.config import LoadedConfig, load_config
from atl_pipeline.config.yaml_reader import read_bounded
from atl_pipeline.findings import ConfigError
from atl_pipeline.project import Project
from atl_pipeline.report import DOMAIN_HEADERS, INCIDENT_HEADERS, domain_rows, incident_rows, text_table
from atl_pipeline.runtime.rolling import TargetError
from atl_pipeline.targets import Target, target_of
from atl_pipeline.validation import ValidatedConfig, validate


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("validate", help="check domains.yml; print file:line:col: message per finding")
    check.add_argument("file", nargs="?", type=Path, help="default: the project's domains.yml")
    check.add_argument("--json", action="store_true", help="print one JSON document for scripts")
    check.set_defaults(run=_validate)

    show = commands.add_parser("config", help="print the table of domains")
    show.add_argument("file", nargs="?", type=Path, help="default: the project's domains.yml")
    show.set_defaults(run=_config)

    up = commands.add_parser("up", help="run every stage as one Dagster run in the project's instance")
    _run_options(up)
    up.add_argument("--approve-destroy", action="store_true",
                    help="let this run apply a plan that deletes or replaces resources")
    up.set_defaults(run=_up)

    plan = commands.add_parser("plan", help="check and plan; show what Terraform would change (changes nothing)")
    _run_options(plan)
    plan.set_defaults(run=_plan)

    apply = commands.add_parser("apply", help="plan, show the changes, ask, then apply them and run every "
                                "later stage")
    _run_options(apply)
    apply.add_argument("--approve-destroy", action="store_true",
                       help="allow a plan that deletes or replaces resources")
    apply.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    apply.set_defaults(run=_apply)

    destroy = commands.add_parser("destroy", help="plan the removal of everything Terraform manages, ask, then "
                                  "remove it and stop every service")
    destroy.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    destroy.add_argument("--json", action="store_true", help="print one JSON document for scripts")
    destroy.set_defaults(run=_destroy)

    drift = commands.add_parser("drift", help="compare what runs with the last apply (a refresh-only plan, "
                                "and the target against Terraform's outputs)")
    drift.add_argument("--heal", action="store_true", help="deploy Terraform's outputs again where they differ")
    drift.add_argument("--json", action="store_true", help="print one JSON document for scripts")
    drift.description = "Exit 0 when nothing drifted, 1 when something did (healed or not)."
    drift.set_defaults(run=_drift)

    status = commands.add_parser("status", help="what runs on the local target, and whether it answers")
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    status.set_defaults(run=_status)

    status.description = "Exit 0 when every deployed domain answers, 1 otherwise (or when nothing is deployed)."

    incidents = commands.add_parser("incidents", help="every alert episode: what fired, where, what the pipeline "
                                    "did about it, and when it recovered (newest first)")
    incidents.add_argument("--json", action="store_true", help="print JSON for scripts")
    incidents.description = "Exit 0 when no incident is open (still firing), 1 otherwise."
    incidents.set_defaults(run=_incidents)

    down = commands.add_parser("down", help="stop every service and the load balancer; keep the state, "
                               "so the next `up` restores them")
    down.set_defaults(run=_down)


def _validate(args: argparse.Namespace) -> int:
    validated, findings = _checked(args.file)
    if args.json:
        config = validated.loaded.config if validated else None
        print(json.dumps({"valid": not findings, "domains": len(config.domains) if config else None,
                          "services": len(config.services) if config else None,
                          "findings": [dataclasses.asdict(finding) for finding in findings]}, indent=2))
    elif findings:
        print("\n".join(map(str, findings)))
    else:
        config = validated.loaded.config
        print(f"{validated.loaded.source.name}: valid ({len(config.domains)} domains, "
              f"{len(config.services)} services)")
    return EXIT_FAILED if findings else EXIT_OK


def _config(args: argparse.Namespace) -> int:
    validated = _load_and_validate(args.file)
    if validated is None:
        return EXIT_FAILED
    print(text_table(DOMAIN_HEADERS, domain_rows(validated.loaded.config)))
    return EXIT_OK


def _load_and_validate(file: Path | None) -> ValidatedConfig | None:
    """The validated configuration, or None after printing every finding."""
    validated, findings = _checked(file)
    for finding in findings:
        print(finding)
    return None if findings else validated


def _checked(file: Path | None) -> tuple[ValidatedConfig | None, list]:
    """The configuration under the schema and the rules, and every finding."""
    try:
        validated = validate(_load(file))
    except ConfigError as error:
        return None, error.findings
    return validated, list(validated.findings)


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


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", type=Path, help="the domains.yml to deploy (default: the project's)")
    parser.add_argument("--domain", metavar="NAME", help="change only this domain and its service")
    parser.add_argument("--json", action="store_true", help="print one JSON document for scripts")


def _runner():
    """The Dagster layer, imported only by the commands that run: Dagster takes a second to import."""
    from atl_pipeline.orchestration import runner
    return runner


def _run(args: argparse.Namespace, progress: Progress, stages: list[str] | None, *, approve: bool = False,
         destroy: bool = False):
    """One Dagster run of the deploy job (or of `stages`), shown stage by stage."""
    from atl_pipeline.orchestration.stage import APPROVE_DESTROY_TAG

    file = getattr(args, "file", None)
    if file is not None:
        try:
            read_bounded(file)
        except OSError as error:
            raise UsageError(f"cannot read {file}: {error.strerror}") from None
    plan_options = {"domain": getattr(args, "domain", None) or "", "destroy": destroy}
    return _runner().run_deploy(Project.from_env(), file, on_stage=progress, on_start=progress.start,
                                on_wait=progress.message, stages=stages, options={"terraform_plan": plan_options},
                                tags={APPROVE_DESTROY_TAG: "true"} if approve else {})


def _up(args: argparse.Namespace) -> int:
    progress = Progress(as_json=args.json)
    outcome = _run(args, progress, None, approve=args.approve_destroy)
    _say_how_to_approve(args, progress, outcome, "up")
    progress.finish(outcome)
    return EXIT_OK if outcome.success else EXIT_FAILED


def _plan(args: argparse.Namespace) -> int:
    """Exit 0 for a plan that was made, also one that waits for approval: nothing failed."""
    progress = Progress(as_json=args.json)
    outcome = _run(args, progress, _runner().stages_until("terraform_plan"))
    changes = outcome.metadata.get("terraform_plan", {}).get("change_list", [])
    _show_changes(progress, changes)
    _say_how_to_approve(args, progress, outcome, "apply")
    progress.finish(outcome, changes=changes, needs_approval=outcome.needs_approval)
    return EXIT_OK if outcome.success or outcome.needs_approval else EXIT_FAILED


def _say_how_to_approve(args: argparse.Namespace, progress: Progress, outcome, command: str) -> None:
    """The command that deploys this same file with the deletions approved."""
    if outcome.needs_approval:
        argv = ["atl", "infra", command, *(["-f", str(args.file)] if args.file else []),
                *(["--domain", args.domain] if args.domain else []), "--approve-destroy"]
        progress.message(f"this plan deletes or replaces resources; to go ahead: {shlex.join(argv)}")


def _apply(args: argparse.Namespace) -> int:
    stages = _runner().stages_until()
    return _plan_then(args, Progress(as_json=args.json), "Apply these changes and deploy?",
                      stages[stages.index("terraform_apply"):], approve=args.approve_destroy)


def _destroy(args: argparse.Namespace) -> int:
    progress = Progress(as_json=args.json)
    code = _plan_then(args, progress, "Destroy everything listed, and stop every service?",
                      ["terraform_apply", "service_deployment"], approve=True, destroy=True)
    if code == EXIT_OK:
        project = Project.from_env()
        _target(project).stop(project)
        progress.message("stopped what ran beside the services (load balancer, monitoring); `atl infra up` "
                         "deploys again")
    return code


def _plan_then(args: argparse.Namespace, progress: Progress, question: str, stages: list[str], *,
               approve: bool, destroy: bool = False) -> int:
    """Plan in one run; show it; when confirmed, apply it with `stages` in a second run."""
    planned = _run(args, progress, _runner().stages_until("terraform_plan"), approve=approve, destroy=destroy)
    changes = planned.metadata.get("terraform_plan", {}).get("change_list", [])
    _say_how_to_approve(args, progress, planned, "apply")
    if not planned.success or not changes:
        if planned.success:
            progress.message("no changes: nothing to apply")
        progress.finish(planned, changes=changes, applied=False)
        return EXIT_OK if planned.success else EXIT_FAILED
    _show_changes(progress, changes)
    if not (args.yes or _confirm(question)):
        progress.message("nothing was applied")
        progress.finish(planned, changes=changes, applied=False)
        return EXIT_FAILED
    applied = _run(args, progress, stages, approve=approve, destroy=destroy)
    progress.finish(applied, changes=changes, applied=applied.success, plan_run_id=planned.run_id)
    return EXIT_OK if applied.success else EXIT_FAILED


def _show_changes(progress: Progress, changes: list[dict]) -> None:
    if changes:
        progress.message(text_table(("address", "action"), [(c["address"], c["action"]) for c in changes]))


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise UsageError("confirmation needed and stdin is not a terminal: pass -y to go ahead")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _drift(args: argparse.Namespace) -> int:
    try:
        report = _runner().run_drift(Project.from_env(), heal=args.heal)
    except _runner().DriftNotChecked as error:
        print(error, file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps({"run_id": report.run_id, "drifted": not report.passed, "lines": report.lines},
                         indent=2))
    else:
        print("\n".join(report.lines) if report.lines else "no drift: what runs matches the last apply")
        print(f"run {report.run_id}: {'no drift' if report.passed else 'DRIFT'}")
    return EXIT_OK if report.passed else EXIT_FAILED


def _status(args: argparse.Namespace) -> int:
    project = Project.from_env()
    try:
        report = _target(project).status(project)
    except TargetError as error:
        print(error, file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_status(report)
    healthy = bool(report["domains"]) and all(d["healthy"] for d in report["domains"])
    return EXIT_OK if healthy else EXIT_FAILED


def _incidents(args: argparse.Namespace) -> int:
    from atl_pipeline.operations.remediation import IncidentLog

    found = IncidentLog(Project.from_env()).incidents()
    if args.json:
        print(json.dumps([{**dataclasses.asdict(incident), "time_to_recover": incident.time_to_recover}
                          for incident in reversed(found)], indent=2))
    else:
        print(text_table(INCIDENT_HEADERS, incident_rows(found)) if found else "no incident recorded")
    return EXIT_FAILED if any(incident.recovered_at is None for incident in found) else EXIT_OK


def _print_status(report: dict) -> None:
    lb = report["load_balancer"]
    line = f"load balancer {lb['address'] or '(none)'} http {lb['http_port']} https {lb['https_port']}"
    line += f" ({'running' if lb['running'] else 'stopped'})" if "running" in lb else ""
    print(line + (f"; trust {lb['ca_cert']}" if lb.get("ca_cert") else ""))
    if "servers" in report:
        print(text_table(("server", "address", "reachable"), [(s["name"], s["address"], "yes" if s["reachable"]
                                                                else "NO") for s in report["servers"]]))
    print(text_table(("domain", "url", "service", "healthy"),
                     [(d["name"], d["url"], d["service"], "yes" if d["healthy"] else "NO") for d in report["domains"]]))
    print(text_table(("service", "release", "replicas"),
                     [(s["name"], s["release"], " ".join(map(_replica, s["replicas"])) or "none")
                      for s in report["services"]]))
    for service in report["services"]:
        if bounds := service.get("autoscale"):
            last = bounds["last_decision"]
            print(f"{service['name']} scales between {bounds['min']} and {bounds['max']} replicas; "
                  + (f"last {last['from']} -> {last['to']} at {time.strftime('%H:%M:%S', time.gmtime(last['at']))} "
                     f"UTC on {last['metric']}" if last else "not scaled yet"))
    alerting = report["alerting"]
    firing = alerting["firing"]
    print(f"alertmanager {alerting['alertmanager_url']}: " + (
        alerting["error"] if firing is None else f"{len(firing)} alerts firing" if firing else "no alert firing"))
    if firing:
        print(text_table(("alert", "domain", "since", "silenced"), [
            (a["alert"], a["domain"] or "-", a["since"], "yes" if a["silenced"] else "no") for a in firing]))


def _replica(replica: dict) -> str:
    """`port:state` on this machine, `server/container:state` on servers."""
    where = replica["port"] if "port" in replica else f"{replica['server']}/{replica['container']}"
    return f"{where}:{replica['state'].lower()}"


def _down(args: argparse.Namespace) -> int:
    project = Project.from_env()
    try:
        stopped = _target(project).stop(project)
    except TargetError as error:
        print(error, file=sys.stderr)
        return EXIT_FAILED
    print("stopped every service and what runs beside them; `atl infra up` brings them back" if stopped
          else "nothing was running")
    return EXIT_OK


def _target(project: Project) -> Target:
    """The target of the project's domains.yml."""
    return target_of(project_config(project))
