"""The autoscaler: every ATL_AUTOSCALE_SECONDS (15 by default) it reads Prometheus and, for each
service that declares `autoscale`, starts a deploy run with the count it decided (atl_pipeline.operations.autoscale);
the run goes through the same stages, and the same zero-downtime roll, as a deploy from git.
"""

import json
import os
import time

import dagster as dg

from atl_pipeline.config import load_config
from atl_pipeline.config.model import duration_seconds
from atl_pipeline.findings import ConfigError
from atl_pipeline.gitops import GitError, deployed_file
from atl_pipeline.operations import autoscale
from atl_pipeline.orchestration.resources import ProjectResource
from atl_pipeline.orchestration.sensors import last_deployed
from atl_pipeline.orchestration.stage import DEPLOY_JOB
from atl_pipeline.orchestration.triggers import TRIGGER_TAG
from atl_pipeline.targets import target_of

IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]


@dg.definitions
def autoscaler_definitions() -> dg.Definitions:
    return dg.Definitions(sensors=[_autoscaler(int(os.environ.get("ATL_AUTOSCALE_SECONDS", "15")))])


def _autoscaler(seconds: int) -> dg.SensorDefinition:
    @dg.sensor(name="autoscaler", job_name=DEPLOY_JOB, minimum_interval_seconds=seconds,
               default_status=dg.DefaultSensorStatus.RUNNING)
    def autoscaler(context: dg.SensorEvaluationContext, project: ProjectResource):
        """Replicas within the bounds of `services.<name>.autoscale`, from the request rate or CPU in Prometheus:
        up at once, down once the metric has stayed low for `scale_down_after`; nothing while a deploy runs."""
        watched, commit = project.as_project(), last_deployed(context, "commit")
        try:
            config = load_config(deployed_file(watched, commit)).config  # the bounds of what was deployed
        except (ConfigError, OSError, GitError) as error:
            return dg.SkipReason(f"the deployed domains.yml does not load: {str(error).splitlines()[0]}")
        scaling = {name: w.autoscale for name, w in config.workloads().items() if w.autoscale}
        if not scaling:
            return dg.SkipReason("no service declares autoscale")
        if context.instance.get_runs(dg.RunsFilter(job_name=DEPLOY_JOB, statuses=IN_FLIGHT), limit=1):
            return dg.SkipReason("a deploy runs: every count holds until it ends")
        scrape = int(duration_seconds(config.prometheus.scrape_interval))
        window = max(10, 4 * scrape)
        if (ended := _last_deploy_ended(context)) and time.time() - ended < window + 2 * scrape:
            # Caddy's request counters restart with each configuration it loads (a deploy's): the average
            # over the window would count only what came since, and read a load as lower than it is
            return dg.SkipReason(f"the last deploy ended {time.time() - ended:.0f} s ago: every count holds until "
                                 f"Prometheus has {window} s of Caddy's new counters")
        running = {n: s.replicas for n, s in target_of(config).runtime(watched).deployed_services().items()}
        try:
            observed = autoscale.observe(f"http://127.0.0.1:{config.target.prometheus_port}", config, running,
                                         f"{window}s")
        except autoscale.MetricsUnavailable as error:
            return dg.SkipReason(str(error))
        history, now = json.loads(context.cursor or "{}"), time.time()
        steps = [autoscale.step(name, scaling[name], running[name], observed[name], history.get(name, ()), now)
                 for name in sorted(observed)]
        context.update_cursor(json.dumps({s.service: s.history for s in steps}))
        scaled = [s for s in steps if s.desired != s.current]
        if scaled:
            autoscale.record_decisions(watched.state_dir / autoscale.DECISIONS, scaled, now)
        held = [f"{s.service}: {s.current} ({s.metric})" for s in steps]
        held += [f"{name}: no request rate or CPU in Prometheus" for name in sorted(scaling.keys() - observed.keys())]
        return [_request(s, commit) for s in scaled] or dg.SkipReason(f"every count holds: {'; '.join(held)}")

    return autoscaler


def _last_deploy_ended(context: dg.SensorEvaluationContext) -> float | None:
    records = context.instance.get_run_records(dg.RunsFilter(job_name=DEPLOY_JOB), limit=1)
    return records[0].end_time if records else None


def _request(step: autoscale.Step, commit: str | None) -> dg.RunRequest:
    ops = {"terraform_plan": {"config": {"replicas": {step.service: step.desired}}}}
    if commit:
        ops["domain_config"] = {"config": {"commit": commit}}
    return dg.RunRequest(
        run_key=f"autoscale:{step.service}:{step.current}->{step.desired}:{int(time.time())}", run_config={"ops": ops},
        tags={TRIGGER_TAG: "autoscale", "atl/autoscale": f"{step.current}->{step.desired}", "atl/service": step.service,
              "atl/metric": step.metric})
