"""`atl utils backup`, `snapshots` and `restore`: restic backups of the project (atl_pipeline.operations.backup)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from atl_pipeline.cli.common import EXIT_FAILED, EXIT_OK, UsageError, project_config
from atl_pipeline.config import Config
from atl_pipeline.errors import AtlError
from atl_pipeline.operations import audit
from atl_pipeline.operations.backup import Restic, restore
from atl_pipeline.project import Project
from atl_pipeline.report import text_table

SETS_UP = "docs/operating.md#backups"


def register(commands: argparse._SubParsersAction) -> None:
    backup = commands.add_parser("backup", help="back up what recovers the platform with restic now, as the "
                                 "`backup` schedule does: a Dagster run of the `backup` job")
    backup.add_argument("--json", action="store_true", help="print one JSON document for scripts")
    backup.description = ("Waits for a deploy in progress. Exit 0 with the snapshot's id, files, size and duration; "
                          "1 when the backup failed, with why.")
    backup.set_defaults(run=_backup)
    snapshots = commands.add_parser("snapshots", help="the snapshots in the repository of domains.yml's `backup:`")
    snapshots.add_argument("--json", action="store_true", help="print one JSON document for scripts")
    snapshots.description = "Exit 0 with the list; 1 when the repository cannot be read, with why."
    snapshots.set_defaults(run=_snapshots)
    restored = commands.add_parser("restore", help="stop what runs and put a snapshot's state, instance, CA, "
                                   "records and volumes back; the next `atl infra up` converges on them")
    restored.add_argument("snapshot", nargs="?", default="latest", help="its id or the start of it (default: latest)")
    restored.add_argument("--json", action="store_true", help="print one JSON document for scripts")
    restored.description = ("Stop the Dagster UI and daemon of the project first (`make run`'s): the instance is "
                            "replaced. Exit 0 once restored; 1 when the repository, the password or the snapshot "
                            "is wrong, and then nothing was changed.")
    restored.set_defaults(run=_restore)


def _backup(args: argparse.Namespace) -> int:
    from atl_pipeline.orchestration.runner import run_backup

    project = Project.from_env()
    _settings(project)
    outcome = run_backup(project, on_wait=lambda message: print(message, file=sys.stderr))
    if args.json:
        print(json.dumps({"run_id": outcome.run_id, "ok": outcome.success, "error": outcome.error,
                          **outcome.metadata}, indent=1, default=str))
    elif outcome.success:
        shown = outcome.metadata
        print(f"snapshot {shown['snapshot']}: {shown['files']} files, {shown['size']} ({shown['added']} new) in "
              f"{shown['duration_s']} s; {shown['snapshots_kept']} snapshots kept, {shown['snapshots_removed']} "
              f"removed; {shown['checked']} (run {outcome.run_id})")
    else:
        print(f"backup failed (run {outcome.run_id}): {outcome.error}", file=sys.stderr)
    return EXIT_OK if outcome.success else EXIT_FAILED


def _snapshots(args: argparse.Namespace) -> int:
    project = Project.from_env()
    config = _settings(project)
    try:
        listed = Restic(project, config.backup, os.environ).snapshots()
    except AtlError as error:
        print(error, file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps([vars(snapshot) for snapshot in listed], indent=1))
    else:
        print(text_table(("snapshot", "time", "host"), [(s.id, s.time, s.hostname) for s in listed]))
    return EXIT_OK


def _restore(args: argparse.Namespace) -> int:
    from atl_pipeline.orchestration.runner import end_interrupted_runs
    from atl_pipeline.targets import target_of

    project = Project.from_env()
    config = _settings(project)
    try:
        report = restore(project, config, os.environ, args.snapshot,
                         lambda: target_of(config).stop(project))
    except AtlError as error:
        print(f"nothing was restored: {error}", file=sys.stderr)
        return EXIT_FAILED
    canceled = end_interrupted_runs(project, f"in progress when snapshot {report.snapshot.id} was taken; "
                                    "restored from it, so no process runs it any more")
    audit.append(project, {"who": audit.cli_user(), "via": "cli", "action": "restore", "outcome": "done",
                           "detail": f"snapshot {report.snapshot.id} of {report.snapshot.time}"})
    if args.json:
        print(json.dumps({"snapshot": vars(report.snapshot), "restored": report.restored, "stopped": report.stopped,
                          "runs_canceled": canceled, "state": report.state, "seconds": round(report.seconds, 1)},
                         indent=1))
        return EXIT_OK
    print(f"restored snapshot {report.snapshot.id} of {report.snapshot.time} in {report.seconds:.1f} s"
          f"{' (what ran was stopped first)' if report.stopped else ''}: {', '.join(report.restored)}")
    print(f"{len(canceled)} runs in progress at the snapshot marked canceled: {', '.join(canceled) or 'none'}")
    if report.state:
        print(report.state)
    print("next: `atl infra up` converges on the restored state")
    return EXIT_OK


def _settings(project: Project) -> Config:
    """The project's configuration, which must have a `backup:` section."""
    config = project_config(project)
    if config.backup is None:
        raise UsageError(f"{project.domains_file.name} has no backup section: see {SETS_UP}")
    return config
