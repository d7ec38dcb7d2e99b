"""`atl utils`: helpers for operators and the Makefile."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import signal
import sys
from pathlib import Path

from atl_pipeline import githook
from atl_pipeline.cli import audit, backups, logs
from atl_pipeline.cli.common import EXIT_FAILED, EXIT_OK, UsageError
from atl_pipeline.config.edit import EditError, set_enabled
from atl_pipeline.config.importer import Options, import_file, option_problems
from atl_pipeline.console import DEFAULT_PORT, Console, ConsoleError
from atl_pipeline.console.access import hash_password
from atl_pipeline.doctor import as_json, examine
from atl_pipeline.files import replace_file
from atl_pipeline.findings import ConfigError
from atl_pipeline.instance import PG_EXAMPLE, PG_SETTING, InstanceError, Storage, set_storage, write
from atl_pipeline.orchestration.receiver import PATH as PUSH_PATH
from atl_pipeline.orchestration.receiver import SECRET_VARIABLE
from atl_pipeline.project import Project
from atl_pipeline.report import text_table
from atl_pipeline.secrets import masked_url


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    instance = commands.add_parser("instance", help="create or update the project's Dagster instance; print its "
                                   "directory (the DAGSTER_HOME of the webserver and the daemon) and its storage")
    storage = instance.add_mutually_exclusive_group()
    storage.add_argument("--postgres", metavar="env:NAME", help="keep runs, event logs and schedules in the "
                         f"PostgreSQL database whose URL ({PG_EXAMPLE}) the variable NAME holds, from now on")
    storage.add_argument("--sqlite", action="store_true", help="keep them in SQLite files in the instance's "
                         "directory again (the default)")
    instance.add_argument("--json", action="store_true", help="print one JSON document for scripts")
    instance.description = (f"{PG_SETTING}=env:NAME, when set, overrides the setting these options keep. "
                            "Exit 0 once the instance is written; 1 when it is written but its URL cannot be used "
                            "here (its variable unset, or not psycopg2's); 2 when the setting is not env:NAME.")
    instance.set_defaults(run=_instance)
    console = commands.add_parser("console", help="the Dagster UI and daemon behind the console's front, which "
                                  "refuses requests of other sites and names; runs until Ctrl-C (`make dev`)")
    console.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)")
    console.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default: {DEFAULT_PORT}")
    console.add_argument("--name", action="append", default=[], metavar="HOST:PORT",
                         help="another name the browser reaches the console by, such as an SSH tunnel's "
                         "localhost:8080 (repeatable); 127.0.0.1 and localhost with --port are always accepted")
    console.description = ("Exit 0 after Ctrl-C; 1 when the webserver, the daemon or the front stops by itself, "
                           "with the log to read.")
    console.set_defaults(run=_console)
    hashing = commands.add_parser("hash-password", help="the bcrypt hash of a password, for an operator's "
                                  "password_hash in domains.yml")
    hashing.description = ("Reads the password from the terminal (not echoed) or from standard input's first line. "
                           "Exit 0 with the hash; 2 when the password is empty.")
    hashing.set_defaults(run=_hash_password)
    doctor = commands.add_parser("doctor", help="the tools, ports and instance the pipeline needs, each with "
                                 "what to do when it is missing")
    doctor.add_argument("--json", action="store_true", help="print one JSON document for scripts")
    doctor.description = "Exit 0 when everything is in place, 1 otherwise."
    doctor.set_defaults(run=_doctor)
    for verb, enabled in (("enable", True), ("disable", False)):
        command = commands.add_parser(verb, help=f"set `enabled: {str(enabled).lower()}` on a domain in "
                                      "domains.yml, keeping its comments and order; the next deploy applies it")
        command.add_argument("domain")
        command.add_argument("-f", "--file", type=Path, help="default: the project's domains.yml")
        command.set_defaults(run=_set_enabled, enabled=enabled)
    importer = commands.add_parser("import", help="turn a domains.yml in the All Things Linux format "
                                   "(allthingslinux/infra) into this schema, for the hcloud target, listing each "
                                   "decision (docs/importing.md)")
    importer.add_argument("file", type=Path, help="the file to import")
    importer.add_argument("-o", "--output", type=Path, help="where to write the result (default: standard output)")
    importer.add_argument("--force", action="store_true", help="overwrite OUTPUT when it exists")
    importer.add_argument("--ssh-public-key", metavar="KEY", help="target.ssh_public_key (default: a placeholder)")
    importer.add_argument("--ssh-from", metavar="CIDR", action="append", default=[],
                          help="target.ssh_from, repeatable (default: a placeholder)")
    importer.add_argument("--zone-id", metavar="ZONE=ID", action="append", default=[],
                          help="the ID of a zone of target.cloudflare.zones, repeatable; ID alone for a file of one "
                               "zone (default: a placeholder per zone)")
    importer.add_argument("--json", action="store_true", help="print one JSON document: the decisions, the "
                          "findings and, without --output, the result")
    importer.description = ("Exit 0 with the decisions on standard error (what was mapped how, what was dropped "
                            "and why, what to review); 1 with the findings that stop the import, located in FILE; "
                            "2 when FILE cannot be read or OUTPUT exists without --force.")
    importer.set_defaults(run=_import)
    silence = commands.add_parser("silence", help="hold back a domain's alerts for planned work: Alertmanager "
                                  "notifies no one and the pipeline remediates nothing until it ends")
    silence.add_argument("domain")
    silence.add_argument("--for", dest="duration", default="1h", metavar="DURATION",
                         help="how long: 90s, 30m, 2h, 1d (default 1h)")
    silence.add_argument("--comment", default="planned work", help="why, as Alertmanager shows it")
    silence.description = "Exit 0 with the silence's id; 1 when Alertmanager cannot be reached; 2 on a bad duration."
    silence.set_defaults(run=_silence)
    hook = commands.add_parser("git-hook", help="tell the pipeline of each push at once: a git repository's "
                               "post-receive hook (docs/operating.md#deploying-a-push-at-once)")
    hook.add_argument("action", choices=["install"])
    hook.add_argument("repository", type=Path, help="the repository pushes go to (bare, or a working tree)")
    hook.add_argument("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}{PUSH_PATH}",
                      help="the console's push receiver (default: %(default)s)")
    hook.add_argument("--print", action="store_true", help="print the hook's script instead of installing it")
    hook.description = (f"The hook signs each notification with {SECRET_VARIABLE}, which must be set here and for "
                        "the console. Exit 0 once installed; 1 when the repository's hooks cannot be written or "
                        "hold a post-receive hook of another's; 2 when the secret is not set.")
    hook.set_defaults(run=_git_hook)
    audit.register(commands)
    backups.register(commands)
    logs.register(commands)


def _silence(args: argparse.Namespace) -> int:
    from atl_pipeline.config.model import duration_seconds
    from atl_pipeline.monitoring.alertmanager import AlertingError, Alertmanager

    if not re.fullmatch(r"[1-9][0-9]{0,4}[smhd]", args.duration):
        raise UsageError(f"--for {args.duration!r}: write a whole number and a unit, such as 90s, 30m, 2h or 1d")
    try:
        silence = Alertmanager.of(Project.from_env()).silence(
            {"domain": args.domain}, duration_seconds(args.duration), getpass.getuser(), args.comment)
    except AlertingError as error:
        print(error, file=sys.stderr)
        return EXIT_FAILED
    print(f"silenced {args.domain} for {args.duration}: silence {silence}")
    return EXIT_OK


def _instance(args: argparse.Namespace) -> int:
    project = Project.from_env()
    if args.postgres is not None or args.sqlite:
        set_storage(project, args.postgres)
    storage = write(project)
    url, problem = _where(storage)
    if args.json:
        print(json.dumps({"directory": str(project.dagster_home), "storage": storage.kind,
                          "postgres": storage.postgres, "source": storage.source, "url": url, "problem": problem},
                         indent=2))
    elif storage.postgres:
        print(f"directory  {project.dagster_home}\nstorage    postgres, its URL in {storage.postgres} "
              f"(set by {storage.source}): {url or problem}")
    else:
        print(f"directory  {project.dagster_home}\nstorage    sqlite, in the directory")
    return EXIT_FAILED if problem else EXIT_OK


def _where(storage: Storage) -> tuple[str | None, str | None]:
    """The database's URL, its password masked, or why it cannot be used here."""
    if not storage.postgres:
        return None, None
    try:
        return masked_url(storage.url()), None
    except InstanceError as error:
        return None, str(error)


def _console(args: argparse.Namespace) -> int:
    try:
        console = Console(Project.from_env(), args.host, args.port, tuple(args.name))
    except ConsoleError as error:
        raise UsageError(str(error)) from None
    # Ctrl-C even when started in the background, where SIGINT comes ignored (and its children would
    # ignore it too); a SIGTERM or a closed terminal stop it the same way, so that nothing is left running.
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, _interrupt)
    try:
        console.start()
        print(f"starting the Dagster webserver and daemon; logs in {console.root}", flush=True)
        console.wait_ready()
        print(f"Dagster UI: {console.front.url} (Ctrl-C stops it)", flush=True)
        if console.front.access.signs_in:
            print(f"sign-in for {', '.join(sorted(console.front.access.accounts))}; the certificate is signed by "
                  f"{console.certificate_authority} (trust it, and point {console.front.access.hostname} at this "
                  "machine)", flush=True)
        if console.receiver.verifiers:
            print(f"push notifications: {console.front.url}{PUSH_PATH}", flush=True)
        print(console.wait(lambda change: print(change, flush=True)), file=sys.stderr)
        return EXIT_FAILED
    except ConsoleError as error:
        print(error, file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second Ctrl-C must not cut the stop short
            signal.signal(number, signal.SIG_IGN)
        console.stop()


def _hash_password(args: argparse.Namespace) -> int:
    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if not password:
        raise UsageError("the password is empty")
    print(hash_password(password))
    return EXIT_OK


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _git_hook(args: argparse.Namespace) -> int:
    if args.print:
        print(githook.script(args.url), end="")
        return EXIT_OK
    if not (secret := os.environ.get(SECRET_VARIABLE)):
        raise UsageError(f"set {SECRET_VARIABLE} to the secret the console checks (the same value for both), then "
                         "install again")
    print(f"installed {githook.install(args.repository, args.url, secret)}: each push is sent to {args.url}")
    return EXIT_OK


def _doctor(args: argparse.Namespace) -> int:
    checks = examine(Project.from_env())
    if args.json:
        print(as_json(checks))
    else:
        print(text_table(("", "check", "detail", "to do"),
                         [("ok" if c.ok else "FAIL", c.name, c.detail, c.fix) for c in checks]))
    return EXIT_OK if all(c.ok for c in checks) else EXIT_FAILED


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


def _import(args: argparse.Namespace) -> int:
    if args.output is not None and args.output.exists() and not args.force:
        raise UsageError(f"{args.output} exists; --force overwrites it")
    options = Options(zone_ids=tuple(args.zone_id), ssh_public_key=args.ssh_public_key,
                      ssh_from=tuple(args.ssh_from), output_name=str(args.output or "domains.yml"))
    if problems := option_problems(options):
        raise UsageError("; ".join(problems))
    try:
        result = import_file(args.file, options)
    except OSError as error:
        raise UsageError(f"cannot read {args.file}: {error.strerror}") from None
    except ConfigError as error:  # the file is too large, or not UTF-8
        result = None
        findings = error.findings
    else:
        findings = result.findings
    if result is not None and result.ok and args.output is not None:
        replace_file(args.output, result.text)
    if args.json:
        print(json.dumps({"ok": not findings, "output": str(args.output) if args.output else None,
                          "decisions": [decision.as_json() for decision in result.decisions] if result else [],
                          "findings": [{"file": f.file, "line": f.line, "column": f.column, "message": f.message}
                                       for f in findings],
                          **({"text": result.text} if result and result.ok and args.output is None else {})},
                         indent=2))
    else:
        for decision in result.decisions if result else []:
            print(decision, file=sys.stderr)
        for finding in findings:
            print(finding, file=sys.stderr)
        if result is not None and result.ok:
            if args.output is None:
                sys.stdout.write(result.text)
            print(f"{args.file.name}: imported ({len(result.decisions)} decisions)"
                  + (f" into {args.output}" if args.output else ""), file=sys.stderr)
    return EXIT_OK if not findings else EXIT_FAILED
