"""What runs: the services deployed, then checked through the load balancer, monitored, and
their certificates verified (atl_pipeline.runtime, health, monitoring, certificates).

Each of these stages follows the one before it by itself (declarative automation, with the
`atl_automation` sensor): whichever stage a person materializes alone, the later ones run
after it, so the stack never stays deployed but unchecked or unmonitored. A new Terraform
apply is what starts them; a new validated_config alone does not (`atl infra plan` stops
there).
"""

from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSelection,
    AutomationCondition,
    Failure,
    Output,
    asset,
)

from atl_pipeline.certificates import CertificateCheck, check_certificates
from atl_pipeline.health import DomainHealth, probe_domains
from atl_pipeline.monitoring.prometheus import MonitoringReport
from atl_pipeline.operations import autoscale
from atl_pipeline.orchestration.resources import ProjectResource, TargetResource
from atl_pipeline.orchestration.stage import GROUP, POOL, RETRY, metadata, stage_errors, stop_on_failed_checks
from atl_pipeline.report import certificate_metadata, deployment_metadata, health_metadata, monitoring_metadata
from atl_pipeline.runtime.rolling import Deployment, settled_domains, to_roll_back
from atl_pipeline.terraform.stages import TerraformApply
from atl_pipeline.validation import ValidatedConfig

# after its upstream stages' update, unless that run ran this stage too; never on a new
# validated_config alone, nor while a blocking check upstream fails
FOLLOWS = (AutomationCondition.eager().ignore(AssetSelection.assets("validated_config"))
           & AutomationCondition.all_deps_blocking_checks_passed())


@asset(group_name=GROUP, kinds={"caddy", "docker"}, pool=POOL, retry_policy=RETRY, automation_condition=FOLLOWS)
def service_deployment(context: AssetExecutionContext, validated_config: ValidatedConfig,
                       terraform_apply: TerraformApply, project: ProjectResource,
                       target: TargetResource) -> Output[Deployment]:
    """The services running as Terraform's outputs declare, behind the load balancer: processes
    under supervisord on the local target, Docker Compose projects shipped over SSH on hcloud."""
    outputs, config = terraform_apply.outputs, validated_config.loaded.config
    with stage_errors():
        runtime = target.of(config).runtime(project.as_project(), outputs)
        before = runtime.deployed_domains()
        outcomes = runtime.deploy(outputs.services, outputs.domains)
    deployment = Deployment(tuple(outcomes), runtime.frontend, outputs.services, outputs.domains,
                            settled_domains(before, outputs.domains, outcomes))
    scaling = autoscale.status(config, project.as_project().state_dir / autoscale.DECISIONS)
    return Output(deployment, metadata=metadata(context, deployment_metadata(outcomes, runtime.frontend, scaling)))


@asset(group_name=GROUP, kinds={"caddy"}, pool=POOL, automation_condition=FOLLOWS, check_specs=[AssetCheckSpec(
    "domains_healthy", asset="health_check", blocking=True,
    description="Every domain answers its health path through the load balancer, over verified TLS.")])
def health_check(context: AssetExecutionContext, validated_config: ValidatedConfig, service_deployment: Deployment,
                 project: ProjectResource,
                 target: TargetResource) -> Iterator[Output[list[DomainHealth]] | AssetCheckResult]:
    """Every domain probed through the load balancer as a client would (once, when the deployment
    left it as it was); a failing changed service rolls back to its previous release."""
    deployment = service_deployment
    results = probe_domains(deployment.frontend, deployment.domains, deployment.services,
                            settle=target.settle_seconds, once=deployment.settled)
    failing = [result for result in results if not result.ok]
    values = metadata(context, health_metadata(results, len(deployment.settled)))
    if releases := to_roll_back(deployment.outcomes, {result.service for result in failing}):
        with stage_errors():
            rolled_back = target.of(validated_config.loaded.config).runtime(project.as_project()).roll_back(releases)
        names = ", ".join(sorted(releases))
        raise Failure(f"unhealthy after this deployment ({'; '.join(f'{r.domain}: {r.error}' for r in failing)}); "
                      + (f"rolled back {names} to the previous release, which serves again" if rolled_back else
                         f"{names} already run the previous release: the previous release fails too"),
                      metadata=values, allow_retries=False)
    yield Output(results, metadata=values)
    check = AssetCheckResult(
        check_name="domains_healthy", passed=not failing, severity=AssetCheckSeverity.ERROR,
        description="\n".join(f"{r.domain}: {r.error}" for r in failing) or "every domain answers",
        metadata={"domains": values["domains"]})
    yield check
    stop_on_failed_checks(check)


@asset(group_name=GROUP, kinds={"prometheus"}, deps=["health_check"], pool=POOL, retry_policy=RETRY,
       automation_condition=FOLLOWS)
def monitoring(context: AssetExecutionContext, validated_config: ValidatedConfig, service_deployment: Deployment,
               project: ProjectResource, target: TargetResource) -> Output[MonitoringReport]:
    """Blackbox probes of each monitored domain through the load balancer, every replica and Caddy
    scraped on the local target, and the SLO alert rules; reloaded when changed, then verified
    through Prometheus's API."""
    deployed = target.of(validated_config.loaded.config)
    with stage_errors():
        report = deployed.monitoring(project.as_project(), service_deployment.frontend).apply(
            service_deployment.services, service_deployment.domains)
        deployed.collector(project.as_project()).apply()
    if report.down:
        raise Failure(f"{len(report.down)} of {report.targets_total} Prometheus targets are down after "
                      f"{target.monitoring_timeout:.0f} s: {', '.join(report.down)}", allow_retries=False)
    return Output(report, metadata=metadata(context, monitoring_metadata(report)))


@asset(group_name=GROUP, kinds={"caddy"}, deps=["monitoring"], pool=POOL, retry_policy=RETRY,
       automation_condition=FOLLOWS, check_specs=[AssetCheckSpec(
           "certificates_valid", asset="certificates",
           description="Every ssl domain is served a certificate that verifies, for its name, not near expiry.")])
def certificates(context: AssetExecutionContext, validated_config: ValidatedConfig, service_deployment: Deployment,
                 project: ProjectResource,
                 target: TargetResource) -> Iterator[Output[CertificateCheck] | AssetCheckResult]:
    """The certificates served for each `ssl: true` domain: verified, and renewed near expiry
    (on hcloud, Hetzner renews its managed certificate: one near expiry fails the check)."""
    kind = target.of(validated_config.loaded.config)
    names = sorted(name for name, domain in service_deployment.domains.items() if domain.ssl)
    renew = kind.runtime(project.as_project()).renew_certificates if kind.renews_certificates else None
    with stage_errors():
        check = check_certificates(service_deployment.frontend, names, target.renew_within_days, renew,
                                   public=kind.public_names)
    values = metadata(context, certificate_metadata(check))
    yield Output(check, metadata=values)
    yield AssetCheckResult(
        check_name="certificates_valid", passed=not check.bad, severity=AssetCheckSeverity.ERROR,
        description="; ".join(f"{c.domain}: {c.error or f'{c.days_left:.1f} days left'}" for c in check.bad)
        or "every certificate verifies", metadata={"certificates": values["certificates"]})

