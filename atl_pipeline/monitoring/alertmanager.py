"""Alertmanager: its configuration from domains.yml's `alerting:` section, and the pipeline's
client of its API v2 (the firing alerts the `alerts` sensor acts on, silences, and the alerts
the pipeline raises itself).

Alertmanager answers on loopback only, behind a password (it allows requests from any web
page's origin, so without one any page could silence the alerts); the pipeline reads the
password from the monitoring folder, readable by its user only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from atl_pipeline.config.model import Alerting
from atl_pipeline.errors import AtlError
from atl_pipeline.files import replace_file
from atl_pipeline.project import Project
from atl_pipeline.secrets import resolve

NOWHERE = "none"  # the root route's receiver: notifications that no receiver is declared for go nowhere
USER = "prometheus"


class AlertingError(AtlError):
    """Alertmanager could not be asked; another attempt may succeed."""

    transient = True


@dataclass(frozen=True)
class Alert:
    """A firing alert as Alertmanager reports it."""

    name: str
    fingerprint: str
    starts_at: str  # as Alertmanager writes it (RFC 3339): with the fingerprint, the episode
    labels: dict[str, str]
    summary: str = ""
    silenced: bool = False  # or inhibited: Alertmanager holds its notifications back

    @property
    def episode(self) -> str:
        return f"{self.fingerprint}@{self.starts_at}"

    @property
    def domain(self) -> str | None:
        return self.labels.get("domain")

    @property
    def started(self) -> float:
        return datetime.fromisoformat(self.starts_at.replace("Z", "+00:00")).timestamp()

    @classmethod
    def of(cls, alert: dict) -> Alert:
        labels = alert.get("labels", {})
        return cls(labels.get("alertname", ""), alert["fingerprint"], alert["startsAt"], labels,
                   alert.get("annotations", {}).get("summary", ""), alert["status"]["state"] == "suppressed")


def configuration(alerting: Alerting, secrets: Path) -> dict:
    """alertmanager.yml: every receiver gets every notification (a route each, each continuing). A
    webhook's token goes to a file of its own under `secrets` (0600); an SMTP password into the
    configuration, which Alertmanager never shows (its API prints `<secret>`)."""
    receivers, routes = [{"name": NOWHERE}], []
    for name, receiver in sorted(alerting.receivers.items()):
        entry: dict = {"name": name}
        if hook := receiver.webhook:
            entry["webhook_configs"] = [{"url": hook.url, "send_resolved": True}]
            if hook.token:
                entry["webhook_configs"][0]["http_config"] = {
                    "authorization": {"credentials_file": str(_secret_file(secrets, f"{name}.token", hook.token))}}
        if mail := receiver.email:
            email = {"to": mail.to, "from": mail.sender, "smarthost": mail.smarthost,
                     "require_tls": mail.require_tls, "send_resolved": True}
            if mail.username:
                email["auth_username"] = mail.username
            if mail.password:
                email["auth_password"] = resolve(mail.password)
            entry["email_configs"] = [email]
        receivers.append(entry)
        routes.append({"receiver": name, "continue": True})
    route = {"receiver": NOWHERE, "group_by": alerting.group_by, "group_wait": alerting.group_wait,
             "group_interval": alerting.group_interval, "repeat_interval": alerting.repeat_interval,
             "routes": routes}
    return {"route": route, "receivers": receivers}


def alerting_status(project: Project) -> dict:
    """The alerts firing now (`atl infra status`), or why they cannot be told."""
    try:
        active = Alertmanager.of(project).active()
    except AlertingError as error:
        return {"firing": None, "error": str(error)}
    return {"firing": [{"alert": alert.name, "domain": alert.domain, "service": alert.labels.get("service"),
                        "since": alert.starts_at, "silenced": alert.silenced, "summary": alert.summary}
                       for alert in active]}


def _secret_file(folder: Path, name: str, ref: str) -> Path:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    replace_file(folder / name, resolve(ref), mode=0o600)
    return folder / name


class Alertmanager:
    """The pipeline's client of Alertmanager's API v2."""

    def __init__(self, url: str, password: str):
        self.url, self.auth = url, (USER, password)

    @classmethod
    def of(cls, project: Project) -> Alertmanager:
        """The one the monitoring stage runs for this project (its address and password are in the
        monitoring folder: domains.yml may have changed since, or not load at all)."""
        folder = project.state_dir / "runtime" / "monitoring"
        if not (folder / "alertmanager.url").exists():
            raise AlertingError("Alertmanager is not set up yet: it starts with the monitoring stage "
                                "(`atl infra up`)")
        return cls((folder / "alertmanager.url").read_text(), (folder / "alertmanager.password").read_text())

    def active(self) -> list[Alert]:
        """The alerts firing now, silenced or not, oldest first."""
        return sorted((Alert.of(alert) for alert in self._call("get", "alerts")), key=lambda alert: alert.starts_at)

    def silence(self, matchers: dict[str, str], seconds: float, author: str, comment: str) -> str:
        """A silence of the alerts with these labels from now on; its id."""
        now = datetime.now(UTC)
        body = {"matchers": [{"name": name, "value": value, "isRegex": False, "isEqual": True}
                             for name, value in matchers.items()],
                "startsAt": now.isoformat(), "endsAt": (now + timedelta(seconds=seconds)).isoformat(),
                "createdBy": author, "comment": comment}
        return self._call("post", "silences", json=body)["silenceID"]

    def raise_alert(self, labels: dict[str, str], summary: str, seconds: float) -> None:
        """An alert of the pipeline's own, firing for `seconds` unless raised again: Alertmanager routes
        it to the receivers like Prometheus's."""
        ends = datetime.now(UTC) + timedelta(seconds=seconds)
        self._call("post", "alerts", json=[{"labels": labels, "annotations": {"summary": summary},
                                            "endsAt": ends.isoformat()}])

    def _call(self, method: str, path: str, **options) -> object:
        try:
            response = requests.request(method, f"{self.url}/api/v2/{path}", auth=self.auth, timeout=10, **options)
        except requests.RequestException as error:
            raise AlertingError(f"Alertmanager at {self.url} did not answer ({type(error).__name__}); "
                                "it runs with monitoring (`atl infra up`)") from None
        if not response.ok:
            raise AlertingError(f"Alertmanager refused {method.upper()} /api/v2/{path}: HTTP {response.status_code} "
                                f"{response.text.strip()[:300]}")
        return response.json() if response.content else None
