"""What each stage reports: tables for the terminal, and each stage's metadata for the UI.

The metadata is plain data (`Markdown` and `Link` mark how a string is shown); the Dagster
layer turns it into Dagster's metadata values.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from atl_pipeline.config import Config
from atl_pipeline.config.quantity import format_bytes
from atl_pipeline.findings import Finding

if TYPE_CHECKING:
    from atl_pipeline.certificates import CertificateCheck
    from atl_pipeline.config import LoadedConfig
    from atl_pipeline.config.model import Backup
    from atl_pipeline.health import DomainHealth
    from atl_pipeline.monitoring.prometheus import MonitoringReport
    from atl_pipeline.operations.backup import BackupReport
    from atl_pipeline.operations.drift import DriftReport
    from atl_pipeline.operations.remediation import Decision, Incident, Outcome
    from atl_pipeline.policy import PolicyReport, Violation
    from atl_pipeline.runtime.http import Frontend
    from atl_pipeline.runtime.rolling import ServiceOutcome
    from atl_pipeline.terraform.stages import TerraformApply, TerraformPlan
    from atl_pipeline.validation import ValidatedConfig

DOMAIN_HEADERS = ("domain", "service", "replicas", "cpu", "memory", "ssl", "monitoring")


def domain_rows(config: Config) -> list[tuple[str, ...]]:
    return [
        (d.name, d.service, str(d.replicas), d.resources.cpu, d.resources.memory,
         _yes(d.ssl), _yes(d.monitoring))
        for d in config.domains
    ]


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [headers, *rows]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], limit: int = 200) -> str:
    """A Markdown table of at most `limit` rows (metadata stays small for large configs)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"\n... and {len(rows) - limit} more")
    return "\n".join(lines)


def markdown_findings(findings: Sequence[Finding], limit: int = 200) -> str:
    if not findings:
        return "No findings."
    lines = [f"- {escape_markdown(str(f))}" for f in findings[:limit]]
    if len(findings) > limit:
        lines.append(f"- ... and {len(findings) - limit} more")
    return "\n".join(lines)


def escape_markdown(text: str) -> str:
    """Text shown literally in Markdown: user-written values never become markup or HTML."""
    return re.sub(r"([\\`*_\[\]|<>#{}])", r"\\\1", text)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


class Markdown(str):
    """Metadata shown as Markdown."""


class Link(str):
    """Metadata shown as a link."""


def config_metadata(loaded: LoadedConfig, source: str, revision: dict) -> dict:
    config = loaded.config
    return {"summary": f"{len(config.domains)} domains, {len(config.services)} services", "source": source,
            "sha256": loaded.source.sha256, **revision, "domains": len(config.domains),
            "services": len(config.services),
            "domain_table": Markdown(markdown_table(DOMAIN_HEADERS, domain_rows(config)))}


def validation_metadata(validated: ValidatedConfig) -> dict:
    return {"summary": "no findings" if validated.ok else f"{len(validated.findings)} findings",
            "findings": len(validated.findings), "report": Markdown(markdown_findings(validated.findings))}


def plan_metadata(plan: TerraformPlan) -> dict:
    rows = [(change.address, change.action) for change in plan.summary.changes]
    summary = "no changes: the files and the state are those of the last apply" if plan.unchanged else \
        plan.summary.describe()
    return {"summary": summary, **plan.summary.counts,
            "changes": Markdown(markdown_table(("address", "action"), rows) if rows else "No changes."),
            "change_list": [{"address": address, "action": action} for address, action in rows],
            "plan_file": plan.plan_file or "none: not planned"}


def policy_metadata(report: PolicyReport) -> dict:
    def rows(findings: Sequence[Violation], *extra: str) -> Markdown:
        return Markdown(markdown_table(("where", "policy", "finding", *extra),
                                       [(f.where, f.policy, f.message, *([f.excepted] if extra else []))
                                        for f in findings]) if findings else "None.")
    return {"violations": rows(report.violations), "excepted": rows(report.excepted, "reason"),
            "rules": ", ".join(report.rules), "checkov": report.checkov}


def audit_rows(records: Sequence[dict]) -> list[tuple[str, ...]]:
    return [(*(str(r.get(key, "")) for key in ("at", "who", "via", "action", "run_id", "outcome")),
             ", ".join(f"{count} to {action}" for action, count in dict(r.get("changes") or {}).items()))
            for r in records]


AUDIT_COLUMNS = ("when", "who", "via", "what", "run", "outcome", "changes")


def audit_metadata(records: Sequence[dict]) -> dict:
    return {"records": len(records), "trail": Markdown(markdown_table(AUDIT_COLUMNS, audit_rows(records)))}


def apply_metadata(applied: TerraformApply, plan: TerraformPlan) -> dict:
    rows = [(name, spec.release, str(spec.replicas), ", ".join(map(str, spec.ports)))
            for name, spec in applied.outputs.services.items()]
    done = f"applied {plan.summary.describe()}" if applied.applied else "no changes; apply skipped"
    return {"summary": f"{done}; state serial {applied.serial}", "state_serial": applied.serial,
            "services": Markdown(markdown_table(("service", "release", "replicas", "ports"), rows))}


def deployment_metadata(outcomes: Sequence[ServiceOutcome], frontend: Frontend, scaling: dict[str, dict]) -> dict:
    """What each service runs now; with `scaling` (atl_pipeline.operations.autoscale.status), the bounds, count and
    last scaling decision of each service that scales."""
    counts = Counter(outcome.action for outcome in outcomes)
    rows = [(o.name, o.release, o.action, str(len(o.replicas)), ", ".join(r.where for r in o.replicas))
            for o in outcomes]
    scaled = [(o.name, f"{scaling[o.name]['min']} to {scaling[o.name]['max']}", str(len(o.replicas)),
               _decision(scaling[o.name]["last_decision"])) for o in outcomes if o.name in scaling]
    return {**({"autoscale": Markdown(markdown_table(("service", "bounds", "replicas", "last decision"), scaled))}
               if scaled else {}),
            "summary": ", ".join(f"{count} {action}" for action, count in sorted(counts.items())) or "nothing runs",
            **{action: counts[action] for action in ("started", "rolled", "unchanged", "stopped")},
            "services": Markdown(markdown_table(("service", "release", "action", "replicas", "where"), rows)
                                 if rows else "No services."),
            "load_balancer": f"http://{frontend.address}:{frontend.http_port}, "
                             f"https://{frontend.address}:{frontend.https_port}"}


def _decision(decision: dict | None) -> str:
    if not decision:
        return "none yet"
    at = datetime.fromtimestamp(decision["at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{decision['from']} -> {decision['to']} at {at} UTC ({decision['metric']})"


def health_metadata(results: Sequence[DomainHealth], probed_once: int = 0) -> dict:
    from atl_pipeline.health import SloReport

    slo = SloReport.of(list(results))
    healthy = sum(result.ok for result in results)
    rows = [(r.domain, r.service, "ok" if r.ok else f"FAIL: {r.error}", str(r.probes), f"{r.percentile(0.5):.1f}",
             f"{r.percentile(0.95):.1f}", f"{max(r.latencies_ms, default=float('nan')):.1f}") for r in results]
    return {"summary": f"{healthy}/{len(results)} domains healthy; average {slo.average_ms:.1f} ms, "
                       f"error rate {slo.error_rate:.2%}"
                       + (f"; {probed_once} unchanged, probed once" if probed_once else ""),
            "probed_once": probed_once,
            "domains": Markdown(markdown_table(("domain", "service", "status", "probes", "p50 ms", "p95 ms",
                                                "max ms"), rows)),
            "slo": Markdown(markdown_table(("key metric", "objective", "measured", "met"), slo.rows()))}


def monitoring_metadata(report: MonitoringReport) -> dict:
    verified = ("unchanged: Prometheus's view checked" if not report.changed else
                "by Prometheus" if report.verified_by == "prometheus" else
                f"directly: every new target answered; in Prometheus's view {len(report.pending)} were not settled "
                "yet (checked again by the next monitoring run)")
    return {"summary": f"{report.targets_up}/{report.targets_total} targets up, {report.rules_loaded} rules loaded"
                       + ("; configuration reloaded" if report.reloaded else ""),
            "verified": verified,
            "targets_up": report.targets_up, "targets_total": report.targets_total,
            "rules_loaded": report.rules_loaded, "prometheus": Link(report.prometheus_url),
            "alertmanager": Link(report.alertmanager_url),
            "targets": Markdown(markdown_table(("job", "instance", "health"), report.targets)),
            "alerts": Markdown(markdown_table(("alert", "about", "state"), report.alerts) if report.alerts
                               else "No alert pending or firing.")}


def certificate_metadata(check: CertificateCheck) -> dict:
    rows = [(c.domain, seen, c.issuer or "-", c.not_after.isoformat(timespec="seconds") if c.not_after else "-",
             f"{c.days_left:.1f}" if c.valid else f"INVALID: {c.error}")
            for seen, certs in (("origin", check.origin), ("public name", check.public)) for c in certs]
    valid = sum(c.valid and c.days_left >= check.within_days for c in check.origin)
    return {"summary": f"{valid}/{len(check.origin)} certificates valid"
                       + (f"; renewed {', '.join(check.renewed)}" if check.renewed else ""),
            "certificates": Markdown(markdown_table(("domain", "seen at", "issuer", "not after", "days left"), rows)
                                     if rows else "No ssl domains."),
            "renewed": len(check.renewed),
            "min_days_left": min((c.days_left for c in check.origin if c.valid), default=0.0)}


def backup_metadata(report: BackupReport, settings: Backup) -> dict:
    return {"snapshot": report.snapshot, "files": report.files, "size": format_bytes(report.bytes),
            "added": format_bytes(report.added), "duration_s": round(report.seconds, 1),
            "repository": settings.repository, "snapshots_kept": report.kept, "snapshots_removed": report.removed,
            "checked": f"{report.checked} of the data read back"}


def drift_metadata(report: DriftReport) -> dict:
    lines = report.lines()
    return {"terraform": len(report.terraform), "runtime": len(report.runtime), "healed": len(report.healed),
            "drift": Markdown("\n".join(f"- {line}" for line in lines) or "No drift.")}


INCIDENT_HEADERS = ("alert", "domain", "service", "detected at", "action", "outcome", "recovered at",
                    "time to recover")


def incident_rows(incidents: Sequence[Incident]) -> list[tuple[str, ...]]:
    """Newest first."""
    return [(i.alert, i.domain or "-", i.service or "-", _when(i.detected_at), i.action or "(pending)",
             i.outcome or "-", _when(i.recovered_at) if i.recovered_at else "firing",
             f"{i.time_to_recover:.0f} s" if i.time_to_recover is not None else "-") for i in reversed(incidents)]


def incidents_metadata(incidents: Sequence[Incident]) -> dict:
    firing = sum(incident.recovered_at is None for incident in incidents)
    return {"incidents": Markdown(markdown_table(INCIDENT_HEADERS, incident_rows(incidents), limit=50)
                                  if incidents else "No incidents."),
            "open": firing, "total": len(incidents)}


def remediation_metadata(decision: Decision, outcome: Outcome | None, incidents: Sequence[Incident]) -> dict:
    """What a remediation run decided, why, and how it went, above the incident table."""
    result = "not attempted" if outcome is None else ("succeeded" if outcome.succeeded else "failed")
    return {"summary": f"{decision.action}: {decision.reason}", "action": decision.action, "reason": decision.reason,
            "service": decision.service or "-", "release": decision.release or "-", "outcome": result,
            "detail": outcome.detail if outcome and outcome.detail else "-", **incidents_metadata(incidents)}


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")
