"""The first stages: domains.yml read and checked (atl_pipeline.config, atl_pipeline.validation)."""

import dataclasses
from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    Failure,
    MetadataValue,
    Output,
    asset,
)

from atl_pipeline.config import LoadedConfig, load_config
from atl_pipeline.findings import ConfigError
from atl_pipeline.gitops import GitSource, Mirror
from atl_pipeline.orchestration.resources import ProjectResource
from atl_pipeline.orchestration.stage import GROUP, POOL, first_lines, metadata, stage_errors, stop_on_failed_checks
from atl_pipeline.policy import POLICIES_DIR
from atl_pipeline.project import Project
from atl_pipeline.report import config_metadata, markdown_findings, validation_metadata
from atl_pipeline.validation import ValidatedConfig, validate


class DomainsFile(Config):
    path: str | None = None
    """The domains.yml to deploy; none: the project's own."""
    commit: str | None = None
    """A commit of the watched git repository (fetched into `.atl/git/` by the git_push sensor):
    deploy its domains.yml and terraform_templates/ instead of a file."""
    sha256: str | None = None
    """The file's content this run was started for (the file sensor's `atl/sha256`): another content is
    refused, so that the run deploys what its record says."""


@asset(group_name=GROUP, kinds={"yaml"}, pool=POOL)
def domain_config(context: AssetExecutionContext, config: DomainsFile,
                  project: ProjectResource) -> Output[LoadedConfig]:
    """domains.yml parsed safely and checked against the schema."""
    revision: dict = {}
    if config.commit:
        with stage_errors():
            loaded, revision = _load_commit(project.as_project(), config.commit)
        source = loaded.source.name
    else:
        source = config.path or str(project.as_project().domains_file)
        loaded = _load_file(source)
        if config.sha256 and loaded.source.sha256 != config.sha256:
            raise Failure(f"{source} changed after this run was started for its content sha256 {config.sha256[:12]} "
                          f"(it now holds {loaded.source.sha256[:12]}): this run deploys nothing; the file sensor "
                          "starts a run for the new content", allow_retries=False)
    context.log.info(f"{source}: sha256 {loaded.source.sha256}")
    return Output(loaded, metadata=metadata(context, config_metadata(loaded, source, revision)))


def _load_file(path: str, name: str | None = None) -> LoadedConfig:
    try:
        return load_config(path, name=name)
    except ConfigError as error:
        raise Failure(f"{name or path} is not a valid configuration:\n{error}",
                      metadata={"findings": MetadataValue.md(markdown_findings(error.findings))},
                      allow_retries=False) from None
    except OSError as error:
        raise Failure(f"cannot read {name or path}: {error.strerror}", allow_retries=False) from None


def _load_commit(project: Project, sha: str) -> tuple[LoadedConfig, dict]:
    """The commit's domains.yml, with its templates beside it, exported from the git mirror."""
    source = GitSource.required(project)
    mirror = Mirror(project)
    tree = mirror.export(sha, source)
    commit = mirror.commit(sha)
    loaded = dataclasses.replace(_load_file(str(tree / "domains.yml"), name=f"{sha[:12]}:{source.paths()[0]}"),
                                 policies_dir=tree / POLICIES_DIR)
    if (tree / "terraform_templates").is_dir():
        loaded = dataclasses.replace(loaded, templates_dir=tree / "terraform_templates")
    return loaded, {"commit": commit.sha, "author": commit.author, "message": commit.message}


@asset(group_name=GROUP, pool=POOL, check_specs=[AssetCheckSpec(
    "valid", asset="validated_config", blocking=True,
    description="No semantic rule has a finding; a failure stops every later stage of the run.")])
def validated_config(context: AssetExecutionContext,
                     domain_config: LoadedConfig) -> Iterator[Output[ValidatedConfig] | AssetCheckResult]:
    """The configuration under the semantic rules: unique names, references, ports, capacity."""
    validated = validate(domain_config)
    values = validation_metadata(validated)
    yield Output(validated, metadata=metadata(context, values))
    check = AssetCheckResult(check_name="valid", passed=validated.ok, severity=AssetCheckSeverity.ERROR,
                             description=first_lines(validated.findings, "findings") or "no findings",
                             metadata={"findings": MetadataValue.md(values["report"])})
    yield check
    stop_on_failed_checks(check)
