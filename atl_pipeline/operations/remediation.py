"""Alerts that act: what the pipeline does about a firing alert, within its guard rails, and the
record of each incident (docs/operating.md, "Alerts that act").

`decide` is a pure function of the alert, the deployment record, the incident log and the
settings; `act` carries a decision out on the target with the stages' own code (the health-gated
roll back, the drift heal, the certificates' renewal). The incident log is append-only JSON lines:
an episode (one alert firing from one start) is detected, acted on once, and recovers.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace

from atl_pipeline.certificates import check_certificates
from atl_pipeline.config.model import Remediation, duration_seconds
from atl_pipeline.errors import AtlError
from atl_pipeline.monitoring.alertmanager import Alert, Alertmanager
from atl_pipeline.operations import drift
from atl_pipeline.project import Project
from atl_pipeline.targets import Target

ROLL_BACK, HEAL, RENEW = "roll back", "heal", "renew certificate"
NOTIFY, NOTHING, NEEDS_PERSON = "notify only", "nothing", "needs a person"
ACTIONS = (ROLL_BACK, HEAL, RENEW)  # those that change what runs: the cool-down and the failure limit count them
ROLLED_BACK_ON = {"AvailabilityBelowSLO", "ErrorRateAboveSLO"}
HEALED_JOBS = {"services", "caddy"}  # InstanceDown of a replica or of Caddy: supervisord did not bring it back
NEEDS_PERSON_ALERT = "RemediationNeedsAPerson"
NEEDS_PERSON_FOR = 24 * 3600  # seconds the pipeline's own alert fires, unless raised again


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str
    service: str | None = None
    release: str | None = None  # the service's release when decided: a roll back leaves it
    subject: str | None = None  # what an action acts on, which its guard rails count: a service, a certificate


@dataclass(frozen=True)
class Outcome:
    succeeded: bool
    detail: str


@dataclass(frozen=True)
class Incident:
    episode: str
    alert: str
    domain: str | None
    service: str | None
    detected_at: float
    action: str = ""
    outcome: str = ""  # succeeded, failed, or empty while no run acted
    reason: str = ""
    run_id: str = ""
    recovered_at: float | None = None

    @property
    def time_to_recover(self) -> float | None:
        return None if self.recovered_at is None else self.recovered_at - self.detected_at


class IncidentLog:
    """The incidents, as JSON lines appended under the project's state folder."""

    def __init__(self, project: Project):
        self.path = project.state_dir / "incidents.jsonl"

    def detected(self, alert: Alert) -> None:
        self._append({"event": "detected", "episode": alert.episode, "alert": alert.name, "domain": alert.domain,
                      "service": alert.labels.get("service"), "at": alert.started})

    def acted(self, episode: str, decision: Decision, outcome: Outcome | None, run_id: str) -> None:
        self._append({"event": "acted", "episode": episode, **asdict(decision), "run_id": run_id, "at": time.time(),
                      "outcome": "" if outcome is None else "succeeded" if outcome.succeeded else "failed",
                      "detail": "" if outcome is None else outcome.detail})

    def recovered(self, episodes: Iterable[str], at: float) -> None:
        for episode in episodes:
            self._append({"event": "recovered", "episode": episode, "at": at})

    def events(self) -> list[dict]:
        """Every event, oldest first; a line cut short (the disk filled mid-write) is skipped."""
        if not self.path.exists():
            return []
        return [event for line in self.path.read_text().splitlines() if (event := _parsed(line))]

    def incidents(self) -> list[Incident]:
        """Each episode, oldest first, with what was done about it."""
        found: dict[str, Incident] = {}
        for event in self.events():
            episode = event["episode"]
            if event["event"] == "detected":
                found[episode] = Incident(episode, event["alert"], event["domain"], event["service"], event["at"])
            elif episode in found and event["event"] == "acted":
                reason = event["reason"] + (f": {event['detail']}" if event["detail"] else "")
                found[episode] = replace(found[episode], action=event["action"], outcome=event["outcome"],
                                         reason=reason, run_id=event["run_id"],
                                         service=event["service"] or found[episode].service)
            elif episode in found and event["event"] == "recovered":
                found[episode] = replace(found[episode], recovered_at=event["at"])
        return list(found.values())

    def acts(self, subject: str) -> list[dict]:
        """The remediations that acted on a subject (not those that only notified), oldest first."""
        return [event for event in self.events() if event["event"] == "acted" and event.get("subject") == subject
                and event["action"] in ACTIONS]

    def _append(self, event: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # one write of one line, appended: two writers (the sensor, a run) never interleave within a line
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, (json.dumps(event) + "\n").encode())
        finally:
            os.close(descriptor)


def open_episodes(incidents: Iterable[Incident]) -> set[str]:
    """The episodes still firing."""
    return {incident.episode for incident in incidents if incident.recovered_at is None}


def _parsed(line: str) -> dict | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "episode" in event and "event" in event else None


def service_of(alert: Alert, record: dict) -> str | None:
    """The service an alert is about: its `service` label, or the one serving its domain."""
    if alert.labels.get("service"):
        return alert.labels["service"]
    domain = record.get("domains", {}).get(alert.domain or "")
    return domain["service"] if domain else None


def decide(alert: Alert, record: dict, log: IncidentLog, settings: Remediation, now: float) -> Decision:
    """What to do about a firing alert, given the last deployment's record, and why."""
    if not settings.enabled:
        return Decision(NOTIFY, "remediation is off (alerting.remediation.enabled: false)", service_of(alert, record))
    decision = _action(alert, service_of(alert, record), record, settings, now)
    if decision.action not in ACTIONS:
        return decision
    return _held_back(decision, log, settings, now) or decision


def _held_back(decision: Decision, log: IncidentLog, settings: Remediation, now: float) -> Decision | None:
    """The guard rails: a subject whose remediations failed too often is left to a person; one
    remediated inside the cool-down is left alone."""
    subject, acts = decision.subject, log.acts(decision.subject)
    failed = [act for act in acts if act["outcome"] == "failed" and act["release"] == decision.release]
    if len(failed) >= settings.max_failures:
        return replace(decision, action=NEEDS_PERSON, reason=f"{len(failed)} remediations of {subject} (release "
                       f"{decision.release}) failed; it is left to a person until a deploy changes it")
    last = max((act["at"] for act in acts), default=None)
    if last is not None and now - last < duration_seconds(settings.cooldown):
        return replace(decision, action=NOTHING, reason=f"{subject} was remediated {now - last:.0f} s ago; the "
                       f"cool-down is {settings.cooldown}")
    return None


def _action(alert: Alert, service: str | None, record: dict, settings: Remediation, now: float) -> Decision:
    running = record.get("services", {}).get(service or "")
    release = running["release"] if running else None
    if alert.name in ROLLED_BACK_ON and running:
        previous = record.get("previous", {}).get(service)
        since = running.get("since", 0)
        if not previous or previous["release"] == release:
            return Decision(NOTIFY, f"{service} has no earlier release to roll back to", service, release)
        if now - since > duration_seconds(settings.after_deploy):
            return Decision(NOTIFY, f"{service} has run release {release} for {(now - since) / 60:.0f} min, longer "
                            f"than the roll-back window ({settings.after_deploy}): not a deploy's regression",
                            service, release)
        return Decision(ROLL_BACK, f"{alert.name} on {alert.domain} {(now - since) / 60:.1f} min after the deploy of "
                        f"release {release}: back to {previous['release']}", service, release, service)
    if alert.name == "InstanceDown" and alert.labels.get("job") in HEALED_JOBS:
        return Decision(HEAL, f"{alert.labels.get('instance')} ({alert.labels.get('job')}) is down and supervisord "
                        "did not bring it back: the drift heal deploys the last apply again", service, release,
                        service or alert.labels["job"])
    if alert.name == "CertificateExpiringSoon" and alert.domain:
        return Decision(RENEW, f"the certificate of {alert.domain} is near expiry: the certificates stage renews it",
                        service, release, f"the certificate of {alert.domain}")
    return Decision(NOTIFY, f"{alert.name} has no remediation: the receivers are notified", service, release)


def respond(alert: Alert, project: Project, target: Target, renew_within_days: float,
            run_id: str) -> tuple[Decision, Outcome | None]:
    """A remediation run's work: decide about an alert episode (unless it stopped firing while the run
    waited), act on the decision, raise the pipeline's own alert for a person, and log it."""
    log, manager = IncidentLog(project), Alertmanager.of(project)
    if alert.episode in {active.episode for active in manager.active()}:
        decision = decide(alert, target.runtime(project).deployed(), log, target.config.alerting.remediation,
                          time.time())
    else:
        decision = Decision(NOTHING, "the alert resolved before this run started", alert.labels.get("service"))
    outcome = None
    if decision.action in ACTIONS:
        try:
            outcome = act(decision, alert, project, target, renew_within_days)
        except AtlError as error:
            outcome = Outcome(False, str(error))
    if decision.action == NEEDS_PERSON:
        manager.raise_alert({"alertname": NEEDS_PERSON_ALERT, "subject": decision.subject, "severity": "critical"},
                            decision.reason, NEEDS_PERSON_FOR)
    log.acted(alert.episode, decision, outcome, run_id)
    return decision, outcome


def act(decision: Decision, alert: Alert, project: Project, target: Target, renew_within_days: float) -> Outcome:
    """Carry a decision out; what happened, in a sentence."""
    runtime = target.runtime(project)
    if decision.action == ROLL_BACK:
        if not runtime.roll_back({decision.service: decision.release}, hold=True):
            return Outcome(False, f"{decision.service} no longer runs release {decision.release}")
        return Outcome(True, f"{decision.service} serves its previous release again, health-gated; "
                             + _monitor(project, target))
    if decision.action == HEAL:
        report = drift.detect(project, target, heal=True)
        if report.runtime:
            return Outcome(False, "still differs after the heal: " + "; ".join(report.runtime))
        if not report.healed:
            return Outcome(True, "nothing to heal: what runs matches the last apply")
        return Outcome(True, "; ".join(report.healed) + "; " + _monitor(project, target))
    if decision.action == RENEW:
        check = check_certificates(runtime.frontend, [alert.domain], renew_within_days,
                                   runtime.renew_certificates if target.renews_certificates else None)
        if check.bad:
            return Outcome(False, "; ".join(f"{c.domain}: {c.error or f'{c.days_left:.1f} days left'}"
                                            for c in check.bad))
        return Outcome(True, f"renewed {', '.join(check.renewed)}" if check.renewed else "the certificate is valid")
    raise ValueError(f"{decision.action!r} changes nothing: only {', '.join(ACTIONS)} are carried out")


def _monitor(project: Project, target: Target) -> str:
    """The monitoring stage's work after a remediation moved replicas: Prometheus scrapes what runs now,
    not the replicas it stopped (which would fire InstanceDown)."""
    runtime = target.runtime(project)
    services = {name: spec.output() for name, spec in runtime.deployed_services().items()}
    report = target.monitoring(project, runtime.frontend).apply(services, runtime.deployed_domains())
    return f"monitoring: {report.targets_up}/{report.targets_total} targets up"
