"""The plan and apply stages over a project's Terraform working directory.

The working directory is `.atl/terraform/<environment>/`: the rendered files, Terraform's
own `.terraform/`, the local state (with the local backend), `plans/`, which keeps the
plan file of each run, and `last-apply.json`: what the last apply left (the rendered files'
digest, the state's serial, the outputs). A plan of the same files over a state whose serial
has not moved since (whoever wrote it: another machine, with the pg backend) is known to
change nothing, and is not run: the world outside the state is compared by the scheduled
drift check, not by every deploy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from atl_pipeline import policy, secrets
from atl_pipeline.config.model import Config, State
from atl_pipeline.errors import AtlError
from atl_pipeline.files import replace_file
from atl_pipeline.operations.autoscale import declared_counts
from atl_pipeline.policy import POLICIES_DIR, PolicyReport
from atl_pipeline.policy.checkov import Scan
from atl_pipeline.project import Project, lock_timeout
from atl_pipeline.targets import Target, target_of
from atl_pipeline.targets.outputs import Outputs
from atl_pipeline.terraform.cli import Terraform
from atl_pipeline.terraform.hcl_check import check_rendered
from atl_pipeline.terraform.plan import PlanSummary
from atl_pipeline.terraform.render import Rendered, files_digest, render, write
from atl_pipeline.validation import ValidatedConfig

PLANS_KEPT = 20
LAST_APPLY = "last-apply.json"


@dataclass(frozen=True)
class TerraformPlan:
    workdir: Path
    plan_file: Path | None  # None: unchanged since the last apply, nothing planned
    summary: PlanSummary
    changed: bool  # anything to apply: resources or outputs
    destroy_approved: bool
    state: State  # the backend settings, secrets as references only
    environment: str
    provider_secrets: tuple[tuple[str, str], ...] = ()  # (environment variable, secret reference)
    partial: bool = False  # of one domain (`-target`), or destroying: its apply leaves no record
    policy: PolicyReport | None = None  # the policy checks on the rendered files and the plan

    @property
    def unchanged(self) -> bool:
        return self.plan_file is None


@dataclass(frozen=True)
class TerraformApply:
    outputs: Outputs
    serial: int
    applied: bool  # False when the plan changed nothing and apply was skipped


class InvalidConfig(AtlError):
    """The configuration has findings; nothing may be planned from it."""


class DestroyNotApproved(AtlError):
    """The plan deletes or replaces resources and was not approved."""


def terraform(project: Project, state: State, environment: str,
              tokens: tuple[tuple[str, str], ...] = ()) -> Terraform:
    """A Terraform runner for the environment's working directory, with its backend's secret and
    the providers' tokens (resolved here, passed in the environment, redacted from every message)."""
    env = {name: secrets.resolve(ref) for name, ref in tokens}
    address = ""
    if state.backend == "pg":
        env["PG_CONN_STR"] = secrets.resolve(state.conn_str)
        address = postgres_address(env["PG_CONN_STR"])
    return Terraform(project.state_dir / "terraform" / environment, project.state_dir / "terraform",
                     env=env, redact=secrets.Redactor(env.values()), lock_timeout=f"{lock_timeout():g}s",
                     backend=state.backend, backend_address=address)


def postgres_address(connection: str) -> str:
    """`host:port` of a PostgreSQL connection string (a URL, or `host=... port=...`); empty if it has none."""
    if "://" in connection:
        parts = urlsplit(connection)
        host, port = parts.hostname or "", parts.port or 5432
    else:
        fields = dict(re.findall(r"(\w+)\s*=\s*'?([^'\s]*)", connection))
        host, port = fields.get("host", ""), fields.get("port", "5432")
    return f"{host}:{port}" if host and not host.startswith("/") else ""


def make_plan(project: Project, validated: ValidatedConfig, name: str, *, destroy_approved: bool = False,
              domain: str | None = None, destroy: bool = False, replicas: Mapping[str, int] | None = None
              ) -> TerraformPlan:
    """Render, check, init and plan; the plan is saved as `plans/<name>.tfplan`. With `domain`,
    the plan changes only that domain and its service; with `destroy`, it removes everything;
    `replicas`: the autoscaler's count for services that scale (atl_pipeline.operations.autoscale)."""
    if not validated.ok:
        raise InvalidConfig(f"{validated.loaded.source.name} has {len(validated.findings)} findings; "
                            "fix them before planning")
    config: Config = validated.loaded.config
    target = target_of(config)
    targets = _addresses(target, domain) if domain else ()
    rendered = render(config, validated.loaded.templates_dir or project.templates_dir,
                      _counts(project, target, replicas or {}))
    tokens = target.provider_secrets()
    runner = terraform(project, config.state, config.environment, tokens)
    policies = validated.loaded.policies_dir or project.root / POLICIES_DIR
    with project.lock():
        scan = Scan(rendered.files, runner.workdir / "policy")  # runs while Terraform plans
        if not (domain or destroy) and _last_apply(runner, rendered):
            return TerraformPlan(runner.workdir, None, PlanSummary(()), False, destroy_approved, config.state,
                                 config.environment, tokens, policy=policy.check(validated.loaded, policies, scan))
        if not _written_before(rendered, runner.workdir):
            check_rendered(rendered)
        write(rendered, runner.workdir)
        runner.init()
        plans = runner.workdir / "plans"
        plans.mkdir(exist_ok=True)
        plan_file = plans / f"{name}.tfplan"
        changed = runner.plan(plan_file, targets=targets, destroy=destroy)
        shown = runner.show(plan_file)
        summary = PlanSummary.from_show_json(shown)
        _prune(plans)
        report = policy.check(validated.loaded, policies, scan, shown)
    return TerraformPlan(runner.workdir, plan_file, summary, changed, destroy_approved, config.state,
                         config.environment, tokens, partial=bool(domain or destroy), policy=report)


def apply_plan(project: Project, plan: TerraformPlan) -> TerraformApply:
    """Apply exactly the saved plan; a plan without changes is not applied at all."""
    if plan.summary.destructive and not plan.destroy_approved:
        raise DestroyNotApproved(
            f"this plan deletes or replaces {len(plan.summary.destructive)} resources and was not approved: "
            "plan again with the approval (`atl infra up --approve-destroy`)")
    runner = terraform(project, plan.state, plan.environment, plan.provider_secrets)
    with project.lock():
        if plan.unchanged:
            last = json.loads((runner.workdir / LAST_APPLY).read_text())
            return TerraformApply(Outputs.parse(last["outputs"]), last["serial"], applied=False)
        if plan.changed:
            runner.apply(plan.plan_file)
        outputs, serial = runner.pulled()
        record = runner.workdir / LAST_APPLY
        if plan.partial:  # the state now holds only part of the files: the next run plans them all
            record.unlink(missing_ok=True)
        else:
            files = {path.name: path.read_text() for path in runner.workdir.glob("*.tf")}  # as planned
            replace_file(record, json.dumps({"files": files_digest(files), "serial": serial, "outputs": outputs}))
        return TerraformApply(Outputs.parse(outputs), serial, applied=plan.changed)


def _addresses(target: Target, name: str) -> tuple[str, ...]:
    """The Terraform addresses of one enabled domain and its service, in the target's templates."""
    serving = target.config.serving
    domain = next((d for d in serving if d.name == name), None)
    if domain is None:
        raise InvalidConfig(f"no enabled domain {name} in {', '.join(d.name for d in serving) or 'the file'}")
    return target.addresses(domain)


def _written_before(rendered: Rendered, workdir: Path) -> bool:
    """The working directory holds exactly these files: they passed the HCL check before they
    were written, so they need not be parsed again (about 0.6 s per hundred domains)."""
    return {path.name: path.read_text() for path in workdir.glob("*.tf")} == rendered.files


def _counts(project: Project, target: Target, asked: Mapping[str, int]) -> dict[str, int]:
    """The replicas of the services that scale: asked, else what runs, else where they start."""
    if not any(workload.autoscale for workload in target.config.workloads().values()):
        return {}
    running = {name: spec.replicas for name, spec in target.runtime(project).deployed_services().items()}
    return declared_counts(target.config, running, asked)


def _last_apply(runner: Terraform, rendered: Rendered) -> bool:
    """The last apply left exactly these files, and the state has not moved since."""
    try:
        last = json.loads((runner.workdir / LAST_APPLY).read_text())
    except (OSError, ValueError):
        return False
    return last.get("files") == files_digest(rendered.files) and last.get("serial") == _serial(runner)


def _serial(runner: Terraform) -> int | None:
    """The state's serial: read from the file of the local backend (no Terraform process), or
    through `terraform state pull` from another backend."""
    if runner.backend != "local":
        return runner.state_serial()
    try:
        return json.loads((runner.workdir / "terraform.tfstate").read_text())["serial"]
    except (OSError, ValueError, KeyError):
        return None



def _prune(plans: Path) -> None:
    for old in sorted(plans.glob("*.tfplan"), key=lambda path: path.stat().st_mtime)[:-PLANS_KEPT]:
        old.unlink()
