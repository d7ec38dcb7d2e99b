"""What the pipeline decides about a firing alert, within its guard rails (atl_pipeline.operations.remediation),
and the Alertmanager configuration it generates, checked by the real amtool."""

from __future__ import annotations

import stat
import subprocess
import time

import pytest
import yaml

from atl_pipeline.config.model import Alerting, Remediation
from atl_pipeline.monitoring.alertmanager import Alert, configuration
from atl_pipeline.operations.remediation import (
    HEAL,
    NEEDS_PERSON,
    NOTHING,
    NOTIFY,
    RENEW,
    ROLL_BACK,
    Decision,
    IncidentLog,
    Outcome,
    decide,
    open_episodes,
)
from atl_pipeline.project import Project

NOW = time.time()
RECORD = {"services": {"api": {"release": "api-2", "since": NOW - 60}},
          "previous": {"api": {"release": "api-1"}},
          "domains": {"api.org": {"service": "api"}}}


def alert(name: str = "ErrorRateAboveSLO", started: str = "2026-11-29T10:00:00Z", **labels: str) -> Alert:
    return Alert(name, f"fp-{name}", started, {"alertname": name, "domain": "api.org", **labels})


@pytest.fixture
def log(tmp_path) -> IncidentLog:
    return IncidentLog(Project(tmp_path))


@pytest.mark.parametrize(("firing", "record", "action", "said"), [
    (alert(), RECORD, ROLL_BACK, "1.0 min after the deploy of release api-2: back to api-1"),
    (alert("AvailabilityBelowSLO"), RECORD, ROLL_BACK, "back to api-1"),
    (alert(), {**RECORD, "services": {"api": {"release": "api-2", "since": NOW - 7200}}}, NOTIFY,
     "longer than the roll-back window (1h)"),
    (alert(), {**RECORD, "previous": {}}, NOTIFY, "api has no earlier release to roll back to"),
    (alert("InstanceDown", job="services", service="api", instance="127.0.0.1:9000"), RECORD, HEAL,
     "127.0.0.1:9000 (services) is down"),
    (alert("InstanceDown", job="blackbox", instance="x"), RECORD, NOTIFY, "InstanceDown has no remediation"),
    (alert("CertificateExpiringSoon"), RECORD, RENEW, "the certificate of api.org is near expiry"),
    (alert("LatencyAboveSLO"), RECORD, NOTIFY, "LatencyAboveSLO has no remediation"),
    (alert(domain="elsewhere.org"), RECORD, NOTIFY, "ErrorRateAboveSLO has no remediation"),
])
def test_each_alert_gets_its_remediation_and_the_reason(log, firing, record, action, said):
    decision = decide(firing, record, log, Remediation(), NOW)
    assert decision.action == action
    assert said in decision.reason


def test_a_service_remediated_inside_the_cool_down_is_left_alone(log):
    log.acted("earlier", Decision(ROLL_BACK, "", "api", "api-3", "api"), Outcome(True, ""), "run-1")
    decision = decide(alert(), RECORD, log, Remediation(cooldown="10m"), time.time() + 300)
    assert (decision.action, decision.reason) == (NOTHING, "api was remediated 300 s ago; the cool-down is 10m")
    assert decide(alert(), RECORD, log, Remediation(cooldown="10m"), time.time() + 601).action == ROLL_BACK
    log.acted("noted", Decision(NOTIFY, "", "api", "api-2", "api"), None, "run-2")  # notifying is no remediation
    assert decide(alert(), RECORD, log, Remediation(cooldown="10m"), time.time() + 601).action == ROLL_BACK


def test_the_cool_down_counts_what_was_acted_on_a_service_or_a_certificate(log):
    log.acted("earlier", Decision(ROLL_BACK, "", "api", "api-2", "api"), Outcome(True, ""), "run-1")
    assert decide(alert("CertificateExpiringSoon"), RECORD, log, Remediation(), NOW).action == RENEW
    log.acted("renewed", Decision(RENEW, "", "api", "api-2", "the certificate of api.org"), Outcome(True, ""), "run-2")
    decision = decide(alert("CertificateExpiringSoon"), RECORD, log, Remediation(), time.time() + 5)
    assert (decision.action, decision.subject) == (NOTHING, "the certificate of api.org")


def test_two_failed_remediations_of_a_release_leave_it_to_a_person_until_a_deploy_changes_it(log):
    settings = Remediation(cooldown="1s", max_failures=2)
    log.acted("first", Decision(HEAL, "", "api", "api-2", "api"), Outcome(False, "still differs"), "run-1")
    assert decide(alert(), RECORD, log, settings, time.time() + 5).action == ROLL_BACK
    log.acted("second", Decision(ROLL_BACK, "", "api", "api-2", "api"), Outcome(False, "unhealthy"), "run-2")
    decision = decide(alert(), RECORD, log, settings, time.time() + 5)
    assert (decision.action, decision.service) == (NEEDS_PERSON, "api")
    assert "2 remediations of api (release api-2) failed" in decision.reason
    redeployed = {**RECORD, "services": {"api": {"release": "api-3", "since": NOW}}, "previous": {"api": {
        "release": "api-2"}}}
    assert decide(alert(), redeployed, log, settings, time.time() + 5).action == ROLL_BACK


def test_remediation_switched_off_only_notifies(log):
    assert decide(alert(), RECORD, log, Remediation(enabled=False), NOW).action == NOTIFY


def test_an_incident_is_detected_acted_on_and_recovered(log):
    firing = alert()
    log.detected(firing)
    log.acted(firing.episode, Decision(ROLL_BACK, "why", "api", "api-2"), Outcome(True, "done"), "run-1")
    assert open_episodes(log.incidents()) == {firing.episode}
    log.recovered([firing.episode], firing.started + 42)
    (incident,) = log.incidents()
    assert (incident.alert, incident.domain, incident.service, incident.action, incident.outcome, incident.reason,
            incident.time_to_recover) == ("ErrorRateAboveSLO", "api.org", "api", ROLL_BACK, "succeeded", "why: done",
                                          42)
    assert open_episodes(log.incidents()) == set()


def test_a_line_cut_short_in_the_incident_log_is_skipped(log):
    firing = alert()
    log.detected(firing)
    with log.path.open("a") as appended:
        appended.write('{"event": "acted", "episode": "x", "acti\n')
    assert [incident.episode for incident in log.incidents()] == [firing.episode]


@pytest.mark.slow  # amtool
def test_the_alertmanager_configuration_passes_amtool_and_keeps_its_secrets_in_private_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_TOKEN", "token-value")
    monkeypatch.setenv("SMTP_PASSWORD", "smtp-value")
    alerting = Alerting.model_validate({"receivers": {
        "oncall": {"webhook": {"url": "https://hooks.example.org/atl", "token": "env:HOOK_TOKEN"}},
        "mail": {"email": {"to": "ops@example.org", "sender": "atl@example.org", "smarthost": "smtp.example.org:587",
                           "username": "atl", "password": "env:SMTP_PASSWORD"}}}})
    written = tmp_path / "alertmanager.yml"
    written.write_text(yaml.safe_dump(configuration(alerting, tmp_path / "secrets")))
    checked = subprocess.run(["amtool", "check-config", str(written)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "token-value" not in written.read_text()
    token = tmp_path / "secrets" / "oncall.token"
    assert token.read_text() == "token-value" and stat.S_IMODE(token.stat().st_mode) == 0o600
    routes = yaml.safe_load(written.read_text())["route"]["routes"]
    assert routes == [{"receiver": "mail", "continue": True}, {"receiver": "oncall", "continue": True}]


@pytest.mark.parametrize("url, message", [
    ("https://user:pw@hooks.example.org/x", "credentials removed"), ("https://hooks.example.org/x?token=1",
                                                                     "should match pattern"),
    ("ftp://hooks.example.org", "write an http:// or https:// URL")])
def test_a_webhook_url_with_a_secret_in_it_is_refused(url, message):
    with pytest.raises(ValueError, match=message):
        Alerting.model_validate({"receivers": {"oncall": {"webhook": {"url": url}}}})
