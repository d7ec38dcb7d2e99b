"""The pipeline's stages as Dagster assets, each a thin call into a plain module."""

import dataclasses
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    Backoff,
    Config,
    Failure,
    MetadataValue,
    Output,
    RetryPolicy,
    asset,
    asset_check,
)

from atl_pipeline import drift
from atl_pipeline.certificates import (
    ServedCertificate,
    due_for_renewal,
    public_certificate,
    served_certificate,
)
from atl_pipeline.config import LoadedConfig, load_config
from atl_pipeline.errors import AtlError
from atl_pipeline.findings import ConfigError
from atl_pipeline.gitops import GitError, GitSource, Mirror
from atl_pipeline.health import DomainHealth, SloReport, probe_domains
from atl_pipeline.monitoring.prometheus import MonitoringReport
from atl_pipeline.orchestration.resources import ProjectResource
from atl_pipeline.project import Project
from atl_pipeline.report import DOMAIN_HEADERS, domain_rows, markdown_findings, markdown_table
from atl_pipeline.runtime.rolling import Deployment
from atl_pipeline.targets import target_of
from atl_pipeline.terraform.plan import PlanSummary
from atl_pipeline.terraform.stages import (
    TerraformApply,
    TerraformPlan,
    apply_plan,
    make_plan,
)
from atl_pipeline.timings import DEFAULT_TIMINGS
from atl_pipeline.validation import ValidatedConfig, validate

GROUP = "deploy"
POOL = "atl-deploy"  # limit 1, whole runs (the instance's dagster.yaml): one deploy at a time
APPROVE_DESTROY_TAG = "atl/approve-destroy"
APPROVAL_CHECK = "destroy_approved"
# errors whose message tells the operator what to do: they fail the stage without a traceback (any other
# exception is a bug, and fails it with its traceback); those marked `transient` are retried
STAGE_ERRORS = (AtlError,)
# for the stages that converge when run again; terraform_apply too: Terraform refuses a saved
# plan once the state changed (StalePlan, not retried), so a retry applies nothing twice
RETRY = RetryPolicy(max_retries=3, delay=2, backoff=Backoff.EXPONENTIAL)


class DomainsFile(Config):
    path: str = ""
    """The domains.yml to deploy; empty means the project's own."""
    commit: str = ""
    """A commit of the watched git repository (fetched into `.atl/git/` by the git_push sensor):
    deploy its domains.yml and terraform_templates/ instead of a file."""


@asset(group_name=GROUP, kinds={"yaml"}, pool=POOL)
def domain_config(context: AssetExecutionContext, config: DomainsFile,
                  project: ProjectResource) -> Output[LoadedConfig]:
    """domains.yml parsed safely and checked against the schema."""
    revision: dict = {}
    if config.commit:
        with _clear_failure():
            loaded, revision = _load_commit(project.get(), config.commit)
        path = loaded.source.name
    else:
        path = config.path or str(project.get().domains_file)
        loaded = _load_file(path)
    cfg = loaded.config
    summary = f"{len(cfg.domains)} domains, {len(cfg.services)} services"
    context.log.info(f"{path}: {summary}, sha256 {loaded.source.sha256}")
    return Output(loaded, metadata={
        "summary": summary,
        "source": path,
        "sha256": loaded.source.sha256,
        **revision,
        "domains": len(cfg.domains),
        "services": len(cfg.services),
        "domain_table": MetadataValue.md(markdown_table(DOMAIN_HEADERS, domain_rows(cfg))),
    })


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
    source = GitSource.of(project)
    if source is None:
        raise GitError("no git repository to read the commit from: set ATL_GIT_REMOTE")
    mirror = Mirror(project)
    tree = mirror.export(sha, source)
    commit = mirror.commit(sha)
    loaded = _load_file(str(tree / "domains.yml"), name=f"{sha[:12]}:{source.paths()[0]}")
    if (tree / "terraform_templates").is_dir():
        loaded = dataclasses.replace(loaded, templates_dir=tree / "terraform_templates")
    return loaded, {"commit": commit.sha, "author": commit.author, "message": commit.message}


@asset(group_name=GROUP, pool=POOL, check_specs=[AssetCheckSpec(
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



class PlanOptions(Config):
    domain: str = ""
    """Plan only this domain and its service (`atl infra up --domain NAME`)."""
    destroy: bool = False
    """Plan the removal of everything (`atl infra destroy`)."""


@asset(group_name=GROUP, kinds={"terraform"}, pool=POOL, retry_policy=RETRY, check_specs=[AssetCheckSpec(
    APPROVAL_CHECK, asset="terraform_plan", blocking=True,
    description=f"A plan that deletes or replaces anything runs only with the run tag {APPROVE_DESTROY_TAG}=true "
                "(`atl infra up --approve-destroy`).")])
def terraform_plan(context: AssetExecutionContext, config: PlanOptions, validated_config: ValidatedConfig,
                   project: ProjectResource) -> Iterator[Output[TerraformPlan] | AssetCheckResult]:
    """The Terraform templates rendered from the configuration, checked, and planned."""
    approved = context.run.tags.get(APPROVE_DESTROY_TAG) == "true"
    with _clear_failure():
        plan = make_plan(project.get(), validated_config, context.run.run_id, destroy_approved=approved,
                         domain=config.domain, destroy=config.destroy)
    summary = plan.summary
    rows = [(change.address, change.action) for change in summary.changes]
    yield Output(plan, metadata={
        "summary": summary.describe(),
        **summary.counts,
        "changes": MetadataValue.md(markdown_table(("address", "action"), rows) if rows else "No changes."),
        "change_list": MetadataValue.json([{"address": address, "action": action} for address, action in rows]),
        "plan_file": MetadataValue.path(str(plan.plan_file)),
    })
    yield _destroy_check(summary, approved)


@asset(group_name=GROUP, kinds={"terraform"}, pool=POOL, retry_policy=RETRY)
def terraform_apply(terraform_plan: TerraformPlan, project: ProjectResource) -> Output[TerraformApply]:
    """Exactly the saved plan, applied; the outputs that drive the deployment."""
    with _clear_failure():
        applied = apply_plan(project.get(), terraform_plan)
    rows = [(name, spec.release, str(spec.replicas), ", ".join(map(str, spec.ports)))
            for name, spec in applied.outputs.services.items()]
    summary = (f"applied {terraform_plan.summary.describe()}" if applied.applied else "no changes; apply skipped")
    return Output(applied, metadata={
        "summary": f"{summary}; state serial {applied.serial}",
        "state_serial": applied.serial,
        "services": MetadataValue.md(markdown_table(("service", "release", "replicas", "ports"), rows)),
    })


@asset(group_name=GROUP, kinds={"caddy", "docker"}, pool=POOL, retry_policy=RETRY)
def service_deployment(validated_config: ValidatedConfig, terraform_apply: TerraformApply,
                       project: ProjectResource) -> Output[Deployment]:
    """The services running as Terraform's outputs declare, behind the load balancer: processes
    under supervisord on the local target, Docker Compose projects shipped over SSH on hcloud."""
    outputs = terraform_apply.outputs
    with _clear_failure():
        runtime = target_of(validated_config.loaded.config).runtime(project.get(), outputs)
        outcomes = runtime.deploy(outputs.services, outputs.domains)
    counts = Counter(outcome.action for outcome in outcomes)
    rows = [(o.name, o.release, o.action, str(len(o.replicas)), ", ".join(r.where for r in o.replicas))
            for o in outcomes]
    frontend = runtime.frontend
    return Output(Deployment(tuple(outcomes), frontend, outputs.services, outputs.domains), metadata={
        "summary": ", ".join(f"{count} {action}" for action, count in sorted(counts.items())) or "nothing runs",
        **{action: counts[action] for action in ("started", "rolled", "unchanged", "stopped")},
        "services": MetadataValue.md(markdown_table(
            ("service", "release", "action", "replicas", "where"), rows) if rows else "No services."),
        "load_balancer": f"http://{frontend.address}:{frontend.http_port}, "
                         f"https://{frontend.address}:{frontend.https_port}",
    })


@asset(group_name=GROUP, kinds={"caddy"}, pool=POOL, check_specs=[AssetCheckSpec(
    "domains_healthy", asset="health_check", blocking=True,
    description="Every domain answers its health path through the load balancer, over verified TLS.")])
def health_check(validated_config: ValidatedConfig, service_deployment: Deployment,
                 project: ProjectResource) -> Iterator[Output[list[DomainHealth]] | AssetCheckResult]:
    """Every domain probed through the load balancer as a client would; a failing changed
    service rolls back to its previous release."""
    deployment = service_deployment
    results = probe_domains(deployment.frontend, deployment.domains, deployment.services)
    failing = [result for result in results if not result.ok]
    to_roll_back = {o.name: o.release for o in deployment.outcomes
                    if o.action == "rolled" and o.name in {result.service for result in failing}}
    slo = SloReport.of(results)
    rows = [(r.domain, r.service, "ok" if r.ok else f"FAIL: {r.error}", f"{r.percentile(0.5):.1f}",
             f"{r.percentile(0.95):.1f}", f"{max(r.latencies_ms, default=float('nan')):.1f}") for r in results]
    metadata = {
        "summary": f"{len(results) - len(failing)}/{len(results)} domains healthy; "
                   f"average {slo.average_ms:.1f} ms, error rate {slo.error_rate:.2%}",
        "domains": MetadataValue.md(markdown_table(("domain", "service", "status", "p50 ms", "p95 ms", "max ms"),
                                                   rows)),
        "slo": MetadataValue.md(markdown_table(("key metric", "objective", "measured", "met"), slo.rows())),
    }
    if to_roll_back:
        with _clear_failure():
            rolled_back = target_of(validated_config.loaded.config).runtime(project.get()).roll_back(to_roll_back)
        reasons = "; ".join(f"{r.domain}: {r.error}" for r in failing)
        names = ", ".join(sorted(to_roll_back))
        raise Failure(f"unhealthy after this deployment ({reasons}); "
                      + (f"rolled back {names} to the previous release, which serves again" if rolled_back else
                         f"{names} already run the previous release: the previous release fails too"),
                      metadata=metadata, allow_retries=False)
    yield Output(results, metadata=metadata)
    yield AssetCheckResult(
        check_name="domains_healthy", passed=not failing, severity=AssetCheckSeverity.ERROR,
        description="; ".join(f"{r.domain}: {r.error}" for r in failing) or "every domain answers",
        metadata={"domains": metadata["domains"]})


@asset(group_name=GROUP, kinds={"prometheus"}, deps=["health_check"], pool=POOL, retry_policy=RETRY)
def monitoring(validated_config: ValidatedConfig, service_deployment: Deployment,
               project: ProjectResource) -> Output[MonitoringReport]:
    """Blackbox probes of each monitored domain through the load balancer, every replica and Caddy
    scraped on the local target, and the SLO alert rules; reloaded when changed, then verified
    through Prometheus's API."""
    with _clear_failure():
        report = target_of(validated_config.loaded.config).monitoring(
            project.get(), service_deployment.frontend).apply(service_deployment.services, service_deployment.domains)
    if report.down:
        raise Failure(f"{len(report.down)} of {report.targets_total} Prometheus targets are down after "
                      f"{DEFAULT_TIMINGS.monitoring_timeout:.0f} s: {', '.join(report.down)}", allow_retries=False)
    return Output(report, metadata={
        "summary": f"{report.targets_up}/{report.targets_total} targets up, {report.rules_loaded} rules loaded"
                   + ("; configuration reloaded" if report.reloaded else ""),
        "targets_up": report.targets_up, "targets_total": report.targets_total,
        "rules_loaded": report.rules_loaded, "prometheus": MetadataValue.url(report.prometheus_url),
    })


@asset(group_name=GROUP, kinds={"caddy"}, deps=["monitoring"], pool=POOL, retry_policy=RETRY,
       check_specs=[AssetCheckSpec(
    "certificates_valid", asset="certificates",
    description="Every ssl domain is served a certificate that verifies, for its name, not near expiry.")])
def certificates(validated_config: ValidatedConfig, service_deployment: Deployment,
                 project: ProjectResource) -> Iterator[Output[list[ServedCertificate]] | AssetCheckResult]:
    """The certificates served for each `ssl: true` domain: verified, and renewed near expiry
    (on hcloud, Hetzner renews its managed certificate: one near expiry fails the check)."""
    target = target_of(validated_config.loaded.config)
    names = sorted(name for name, domain in service_deployment.domains.items() if domain.ssl)
    served = {name: served_certificate(service_deployment.frontend, name) for name in names}
    due = due_for_renewal(served.values(), DEFAULT_TIMINGS.renew_within_days) if target.renews_certificates else []
    if due:
        with _clear_failure():
            renewed = target.runtime(project.get()).renew_certificates(due)
        served.update({cert.domain: cert for cert in renewed})
    inventory = [served[name] for name in names]
    public = [public_certificate(name) for name in names] if target.public_names else []
    rows = [(c.domain, seen, c.issuer or "-", c.not_after.isoformat(timespec="seconds") if c.not_after else "-",
             f"{c.days_left:.1f}" if c.valid else f"INVALID: {c.error}")
            for seen, certs in (("origin", inventory), ("public name", public)) for c in certs]
    bad = [c for c in [*inventory, *public] if not c.valid or c.days_left < DEFAULT_TIMINGS.renew_within_days]
    table = MetadataValue.md(markdown_table(("domain", "seen at", "issuer", "not after", "days left"), rows)
                             if rows else "No ssl domains.")
    yield Output(inventory, metadata={
        "summary": f"{len(inventory) - len(bad)}/{len(inventory)} certificates valid"
                   + (f"; renewed {', '.join(due)}" if due else ""),
        "certificates": table, "renewed": len(due),
        "min_days_left": min((c.days_left for c in inventory if c.valid), default=0.0),
    })
    yield AssetCheckResult(
        check_name="certificates_valid", passed=not bad, severity=AssetCheckSeverity.ERROR,
        description="; ".join(f"{c.domain}: {c.error or f'{c.days_left:.1f} days left'}" for c in bad)
        or "every certificate verifies", metadata={"certificates": table})


class DriftOptions(Config):
    heal: bool = False
    """Deploy Terraform's outputs again when what runs differs from them."""


@asset_check(asset=service_deployment, additional_ins={"validated_config": AssetIn("validated_config")}, pool=POOL,
             description="What runs and what Terraform manages match the last apply (a refresh-only plan, and "
                         "the target against Terraform's outputs). Evaluated by the drift schedule.")
def no_drift(config: DriftOptions, validated_config: ValidatedConfig, project: ProjectResource) -> AssetCheckResult:
    with _clear_failure():
        report = drift.detect(project.get(), validated_config.loaded.config, heal=config.heal)
    lines = report.lines()
    healed_all = report.healed and not (report.terraform or report.runtime)
    return AssetCheckResult(
        passed=not report.drifted, severity=AssetCheckSeverity.WARN if healed_all else AssetCheckSeverity.ERROR,
        description="; ".join(lines) or "what runs matches the last apply",
        metadata={"terraform": len(report.terraform), "runtime": len(report.runtime), "healed": len(report.healed),
                  "drift": MetadataValue.md("\n".join(f"- {line}" for line in lines) or "No drift.")})


def _destroy_check(summary: PlanSummary, approved: bool) -> AssetCheckResult:
    doomed = ", ".join(f"{change.address} ({change.action})" for change in summary.destructive)
    if not doomed:
        description = "nothing is deleted or replaced"
    elif approved:
        description = f"approved by the run tag {APPROVE_DESTROY_TAG}: {doomed}"
    else:
        description = (f"the plan deletes or replaces {len(summary.destructive)} resources: {doomed}. "
                       f"Nothing was applied. To approve, plan again with --approve-destroy (`atl infra apply` "
                       f"or `up`), or launch the run with the tag {APPROVE_DESTROY_TAG}=true.")
    return AssetCheckResult(check_name=APPROVAL_CHECK, passed=approved or not doomed,
                            severity=AssetCheckSeverity.ERROR, description=description)


@contextmanager
def _clear_failure() -> Iterator[None]:
    """A stage error becomes a Dagster failure whose message is the operator's next step."""
    try:
        yield
    except STAGE_ERRORS as error:
        raise Failure(str(error), allow_retries=error.transient) from None
