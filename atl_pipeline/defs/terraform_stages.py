"""Terraform: the templates rendered and planned, then exactly that plan applied (atl_pipeline.terraform)."""

from collections.abc import Iterator

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetExecutionContext, Config, Output, asset

from atl_pipeline.orchestration.resources import ProjectResource, TerraformResource
from atl_pipeline.orchestration.stage import (
    APPROVAL_CHECK,
    APPROVE_DESTROY_TAG,
    GROUP,
    POLICY_CHECK,
    POOL,
    RETRY,
    first_lines,
    metadata,
    stage_errors,
    stop_on_failed_checks,
    to_metadata,
)
from atl_pipeline.policy import PolicyReport
from atl_pipeline.report import apply_metadata, plan_metadata, policy_metadata
from atl_pipeline.terraform.plan import PlanSummary
from atl_pipeline.terraform.stages import TerraformApply, TerraformPlan
from atl_pipeline.validation import ValidatedConfig


class PlanOptions(Config):
    domain: str | None = None
    """Plan only this domain and its service (`atl infra up --domain NAME`)."""
    destroy: bool = False
    """Plan the removal of everything (`atl infra destroy`)."""
    replicas: dict[str, int] = {}
    """The autoscaler's count for each service it scales, kept within the service's bounds."""


@asset(group_name=GROUP, kinds={"terraform"}, pool=POOL, retry_policy=RETRY, check_specs=[
    AssetCheckSpec(APPROVAL_CHECK, asset="terraform_plan", blocking=True,
                   description=f"A plan that deletes or replaces anything runs only with the run tag "
                               f"{APPROVE_DESTROY_TAG}=true (`atl infra up --approve-destroy`)."),
    AssetCheckSpec(POLICY_CHECK, asset="terraform_plan", blocking=True,
                   description="The policies (shipped and policies/*.rego) over domains.yml and the plan, and "
                               "Checkov over the rendered files; domains.yml's policy.exceptions let findings "
                               "through, recorded here.")])
def terraform_plan(context: AssetExecutionContext, config: PlanOptions, validated_config: ValidatedConfig,
                   project: ProjectResource,
                   terraform: TerraformResource) -> Iterator[Output[TerraformPlan] | AssetCheckResult]:
    """The Terraform templates rendered from the configuration, checked, and planned."""
    approved = context.run.tags.get(APPROVE_DESTROY_TAG) == "true"
    with stage_errors():
        plan = terraform.plan(project.as_project(), validated_config, context.run.run_id, destroy_approved=approved,
                              domain=config.domain, destroy=config.destroy, replicas=config.replicas)
    yield Output(plan, metadata=metadata(context, plan_metadata(plan)))
    checks = _destroy_check(plan.summary, approved), _policy_check(plan.policy)
    yield from checks
    stop_on_failed_checks(*checks)


@asset(group_name=GROUP, kinds={"terraform"}, pool=POOL, retry_policy=RETRY)
def terraform_apply(context: AssetExecutionContext, terraform_plan: TerraformPlan, project: ProjectResource,
                    terraform: TerraformResource) -> Output[TerraformApply]:
    """Exactly the saved plan, applied; the outputs that drive the deployment."""
    with stage_errors():
        applied = terraform.apply(project.as_project(), terraform_plan)
    return Output(applied, metadata=metadata(context, apply_metadata(applied, terraform_plan)))


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


def _policy_check(report: PolicyReport) -> AssetCheckResult:
    description = (f"{len(report.violations)} policy violations, nothing applied. Fix domains.yml, or list an "
                   f"exception with its reason under policy.exceptions:\n{first_lines(report.violations, 'violations')}"
                   if report.violations else f"no violations ({len(report.excepted)} excepted)")
    return AssetCheckResult(check_name=POLICY_CHECK, passed=report.passed, severity=AssetCheckSeverity.ERROR,
                            description=description, metadata=to_metadata(policy_metadata(report)))
