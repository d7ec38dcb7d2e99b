"""Sensors that start a deploy when domains.yml changes: pushed to git, or edited in place
(atl_pipeline/defs/sensors.py says which runs by default)."""

from __future__ import annotations

import hashlib
import json

from dagster import (
    AssetKey,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from atl_pipeline.config.yaml_reader import read_bounded
from atl_pipeline.gitops import GitError, GitSource, Mirror, redact_credentials
from atl_pipeline.orchestration.resources import ProjectResource
from atl_pipeline.orchestration.stage import DEPLOY_JOB
from atl_pipeline.orchestration.triggers import TRIGGER_TAG

DEFAULT_POLL_SECONDS = 5
TAG_LIMIT = 200  # a commit message in a run tag: its subject, cut to this many characters


def _default(on: bool) -> DefaultSensorStatus:
    return DefaultSensorStatus.RUNNING if on else DefaultSensorStatus.STOPPED


def git_push(running: bool, poll_seconds: int = DEFAULT_POLL_SECONDS) -> SensorDefinition:
    """Deploy each new commit of the watched branch that touches domains.yml or terraform_templates/.

    The cursor is the branch head last seen. Commits that arrived since the last tick
    coalesce: one run, keyed by the newest commit that touches the watched files, deploys
    that commit's files from the mirror. A commit that fails is a failed run; the cursor
    has moved past it, so the next commit deploys as usual.
    """

    @sensor(job_name=DEPLOY_JOB, minimum_interval_seconds=poll_seconds, default_status=_default(running))
    def git_push(context: SensorEvaluationContext, project: ProjectResource):
        watched = project.as_project()
        source = GitSource.of(watched)
        if source is None:
            return SkipReason(f"{watched.root} is not in a git repository and ATL_GIT_REMOTE is not set")
        mirror = Mirror(watched)
        try:
            head = mirror.head(source)
            seen = context.cursor or last_deployed(context, "commit")
            if head == seen:
                return SkipReason(f"{source.branch} is at {head[:12]}, already seen")
            mirror.fetch(source)
            changes = mirror.changes(source, seen, head)
        except GitError as error:
            return SkipReason(f"cannot read {redact_credentials(source.remote)}: {error}")
        context.update_cursor(head)
        if not changes:
            return SkipReason(f"{source.branch} moved to {head[:12]}; no new commit touches "
                              f"{' or '.join(source.paths())}")
        newest = changes[0]
        return RunRequest(
            run_key=newest.sha,
            run_config={"ops": {"domain_config": {"config": {"commit": newest.sha}}}},
            tags={TRIGGER_TAG: "git", "atl/commit": newest.sha, "atl/author": newest.author[:TAG_LIMIT],
                  "atl/message": newest.message[:TAG_LIMIT], "atl/commits": str(len(changes))},
        )

    return git_push


def domains_file_changed(running: bool) -> SensorDefinition:
    """A dev box without git: deploy whenever the file's content changes.

    The run key is `<change number>:<sha256>`: a bare content hash would never deploy a
    file reverted to an earlier content, because Dagster launches a run key only once.
    A content that was last materialized (by `atl infra up`, say) counts as seen, so the
    sensor never deploys again what the CLI has just deployed.
    """

    @sensor(job_name=DEPLOY_JOB, minimum_interval_seconds=DEFAULT_POLL_SECONDS, default_status=_default(running))
    def domains_file_changed(context: SensorEvaluationContext, project: ProjectResource):
        path = project.as_project().domains_file
        try:
            digest = hashlib.sha256(read_bounded(path)).hexdigest()
        except OSError as error:
            return SkipReason(f"cannot read {path}: {error.strerror}")
        last = json.loads(context.cursor) if context.cursor else {"sha256": None, "change": 0}
        if digest in (last["sha256"], last_deployed(context, "sha256")):
            context.update_cursor(json.dumps({**last, "sha256": digest}))
            return SkipReason(f"{path.name} unchanged since it was last deployed (sha256 {digest[:12]})")
        change = last["change"] + 1
        context.update_cursor(json.dumps({"sha256": digest, "change": change}))
        return RunRequest(
            run_key=f"{change}:{digest}",
            run_config={"ops": {"domain_config": {"config": {"path": str(path), "sha256": digest}}}},
            tags={TRIGGER_TAG: "file", "atl/sha256": digest},
        )

    return domains_file_changed


def last_deployed(context: SensorEvaluationContext, key: str) -> str | None:
    """A metadata value (the sha256 of the file, or its commit) of the last domains.yml materialized."""
    event = context.instance.get_latest_materialization_event(AssetKey("domain_config"))
    value = event.asset_materialization.metadata.get(key) if event and event.asset_materialization else None
    return value.value if value else None
