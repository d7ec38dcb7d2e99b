"""The pipeline's stages as Dagster assets, each a thin call into a plain module."""

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
from atl_pipeline.orchestration.resources import ProjectResource
from atl_pipeline.report import DOMAIN_HEADERS, domain_rows, markdown_findings, markdown_table
from atl_pipeline.validation import ValidatedConfig, validate

GROUP = "deploy"


class DomainsFile(Config):
    path: str = ""
    """The domains.yml to deploy; empty means the project's own."""


@asset(group_name=GROUP, kinds={"yaml"})
def domain_config(context: AssetExecutionContext, config: DomainsFile,
                  project: ProjectResource) -> Output[LoadedConfig]:
    """domains.yml parsed safely and checked against the schema."""
    path = config.path or str(project.get().domains_file)
    try:
        loaded = load_config(path)
    except ConfigError as error:
        raise Failure(f"{path} is not a valid configuration:\n{error}",
                      metadata={"findings": MetadataValue.md(markdown_findings(error.findings))},
                      allow_retries=False) from None
    except OSError as error:
        raise Failure(f"cannot read {path}: {error.strerror}", allow_retries=False) from None
    cfg = loaded.config
    summary = f"{len(cfg.domains)} domains, {len(cfg.services)} services"
    context.log.info(f"{path}: {summary}, sha256 {loaded.source.sha256}")
    return Output(loaded, metadata={
        "summary": summary,
        "source": path,
        "sha256": loaded.source.sha256,
        "domains": len(cfg.domains),
        "services": len(cfg.services),
        "domain_table": MetadataValue.md(markdown_table(DOMAIN_HEADERS, domain_rows(cfg))),
    })


@asset(group_name=GROUP, check_specs=[AssetCheckSpec(
    "valid", asset="validated_config", blocking=True,
    description="No semantic rule has a finding; a failure stops every later stage of the run.")])
def validated_config(domain_config: LoadedConfig) -> Iterator[Output[ValidatedConfig] | AssetCheckResult]:
    """The configuration under the semantic rules: unique names, references, ports, capacity."""
    validated = validate(domain_config)
    findings = markdown_findings(validated.findings)
    summary = "no findings" if validated.ok else f"{len(validated.findings)} findings"
    yield Output(validated, metadata={"summary": summary, "findings": len(validated.findings),
                                      "report": MetadataValue.md(findings)})
    yield AssetCheckResult(check_name="valid", passed=validated.ok, severity=AssetCheckSeverity.ERROR,
                           description=None if validated.ok else "\n".join(map(str, validated.findings[:20])),
                           metadata={"findings": MetadataValue.md(findings)})
