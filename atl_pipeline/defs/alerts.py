"""Alerts that act: the `alerts` sensor starts a `remediate` run for each alert episode that
Alertmanager reports firing (one run per episode: its run key); the run decides and acts
(atl_pipeline.operations.remediation) and materializes `incidents`, the table of every episode.
"""

import time

import dagster as dg
from dagster import AssetIn, Config, Failure, MaterializeResult, RunRequest, SensorResult, SkipReason, asset

from atl_pipeline.monitoring.alertmanager import Alert, AlertingError, Alertmanager
from atl_pipeline.operations import remediation
from atl_pipeline.operations.remediation import IncidentLog
from atl_pipeline.orchestration.hooks import STAGE_LINES
from atl_pipeline.orchestration.resources import ProjectResource, TargetResource
from atl_pipeline.orchestration.stage import POOL, stage_errors, to_metadata
from atl_pipeline.orchestration.triggers import TRIGGER_TAG
from atl_pipeline.report import incidents_metadata, remediation_metadata
from atl_pipeline.validation import ValidatedConfig

REMEDIATE_JOB = "remediate"
POLL_SECONDS = 5


class FiringAlert(Config):
    """The alert episode a remediation run answers, as the sensor read it from Alertmanager."""

    name: str
    fingerprint: str
    starts_at: str
    labels: dict[str, str]
    summary: str = ""

    def alert(self) -> Alert:
        return Alert(self.name, self.fingerprint, self.starts_at, self.labels, self.summary)


@asset(group_name="operations", kinds={"alertmanager"}, pool=POOL,
       ins={"validated_config": AssetIn("validated_config")})
def incidents(context: dg.AssetExecutionContext, config: FiringAlert, validated_config: ValidatedConfig,
              project: ProjectResource, target: TargetResource) -> MaterializeResult:
    """Every alert episode: what fired, where, what the pipeline did about it, and when it recovered.
    Each `remediate` run adds one, deciding within the guard rails (cool-down, failure limit,
    roll-back window) and saying why in its metadata."""
    watched = project.as_project()
    with stage_errors():
        decision, outcome = remediation.respond(config.alert(), watched, target.of(validated_config.loaded.config),
                                                target.renew_within_days, context.run_id)
    values = to_metadata(remediation_metadata(decision, outcome, IncidentLog(watched).incidents()))
    if outcome and not outcome.succeeded:
        raise Failure(f"{decision.action} of {decision.subject} failed: {outcome.detail}", metadata=values,
                      allow_retries=False)
    return MaterializeResult(metadata=values)


remediate_job = dg.define_asset_job(REMEDIATE_JOB, selection=[incidents],
                                    description="Answer one alert episode: roll back, heal, renew, or notify.",
                                    hooks=STAGE_LINES)


@dg.sensor(job=remediate_job, minimum_interval_seconds=POLL_SECONDS, default_status=dg.DefaultSensorStatus.RUNNING)
def alerts(context: dg.SensorEvaluationContext, project: ProjectResource) -> SensorResult | SkipReason:
    """A `remediate` run for each alert episode Alertmanager reports firing and no silence holds
    back; episodes that stopped firing are recorded as recovered."""
    watched = project.as_project()
    try:
        active = Alertmanager.of(watched).active()
    except AlertingError as error:
        return SkipReason(str(error))
    log = IncidentLog(watched)
    seen = log.incidents()  # the log is read once a tick, and again only when this tick wrote to it
    recovered = remediation.open_episodes(seen) - {alert.episode for alert in active}
    log.recovered(recovered, time.time())
    known = {incident.episode for incident in seen}
    new = [alert for alert in active if not alert.silenced and alert.episode not in known
           and alert.name != remediation.NEEDS_PERSON_ALERT]  # the pipeline's own: a person answers it
    for alert in new:
        log.detected(alert)
    events = [dg.AssetObservation("incidents", metadata=to_metadata(incidents_metadata(log.incidents())))
              ] if recovered or new else []
    if not (new or recovered):
        return SkipReason(f"{len(active)} alerts active, none new" if active else "no alert is firing")
    return SensorResult(run_requests=[_request(alert) for alert in new], asset_events=events)


def _request(alert: Alert) -> RunRequest:
    config = FiringAlert(name=alert.name, fingerprint=alert.fingerprint, starts_at=alert.starts_at,
                         labels=alert.labels, summary=alert.summary)
    return RunRequest(run_key=alert.episode, run_config={"ops": {"incidents": {"config": config.model_dump()}}},
                      tags={TRIGGER_TAG: "alert", "atl/alert": alert.name, "atl/fingerprint": alert.fingerprint,
                            "atl/domain": alert.domain or "-", "atl/service": alert.labels.get("service", "-")})
