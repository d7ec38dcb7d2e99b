"""Prometheus, the blackbox exporter and Alertmanager under the local supervisord, bound to loopback.

The configuration is generated from the deployment: a blackbox probe of each domain with
`monitoring: true` through the target's load balancer (its own module, for its Host and
SNI, verified against the CA that issued the certificate) and, on the local target, every
serving replica's `/metrics` and Caddy's. On hcloud the replicas and routers listen on the
servers' private network, so this machine sees the domains as their clients do, through
the load balancer. A new configuration is checked with promtool before it replaces the
running one (Alertmanager's with amtool), and is then reloaded, not restarted. The targets themselves are not in that
configuration: Prometheus discovers them from files under `targets/` (one per job), which it
watches, so a deployment that moves replicas or adds a domain rewrites those files only and
reloads nothing. Its discovery passes changes on every 5 s, so its view may lag that long.

When nothing changed, the stage checks Prometheus's view once and returns. When the targets
changed, it asks each new one directly (a replica's metrics, the exporter's probe of a domain),
then gives Prometheus's view half a second to agree; the report says which verified them. A target
that does not answer directly is waited for in Prometheus's view, as long as the timeout allows.
"""

from __future__ import annotations

import dataclasses
import filecmp
import json
import secrets
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import requests
import yaml

from atl_pipeline import processes
from atl_pipeline.config.model import Config
from atl_pipeline.files import replace_file
from atl_pipeline.monitoring import alertmanager
from atl_pipeline.project import state_files
from atl_pipeline.runtime.http import Frontend
from atl_pipeline.runtime.rolling import Domains, Services, TargetError
from atl_pipeline.runtime.supervisor import Supervisor

BINARIES = {"prometheus": "prometheus", "promtool": "prometheus", "prometheus-blackbox-exporter":
            "prometheus-blackbox-exporter", "prometheus-alertmanager": "prometheus-alertmanager",
            "amtool": "prometheus-alertmanager"}  # binary -> Debian package
PROGRAMS = ("blackbox", "alertmanager", "prometheus")  # Prometheus last: it sends to Alertmanager
WEB_USER = "prometheus"  # the user Prometheus (and the pipeline) asks the exporter and Alertmanager as
RELOAD_TIMEOUT = 10.0
# seconds Prometheus's view has to agree with new targets that answered directly: its file discovery
# passes new targets on every 5 s, so waiting longer would mostly wait for that; the next run checks again
VIEW_WAIT = 0.5
PROBE_JOB = "blackbox"
TOOL_TIMEOUT = 60.0  # for promtool, the exporter's check and caddy hash-password
ASKED_AT_ONCE = 8  # new targets asked directly at a time (a domain's probe is a TLS handshake)


class MonitoringError(TargetError):
    """Monitoring could not be set up; what monitored before keeps running."""


class MonitoringUnavailable(MonitoringError):
    """Prometheus or the exporter did not answer over HTTP (restarting, say): another attempt may succeed."""

    transient = True


@dataclass(frozen=True)
class MonitoringReport:
    prometheus_url: str
    alertmanager_url: str
    targets_up: int
    targets_total: int
    rules_loaded: int
    reloaded: bool
    down: tuple[str, ...] = ()
    changed: bool = True  # the targets or the configuration; False: Prometheus's view checked once
    verified_by: str = "prometheus"  # or "direct": Prometheus had not applied the new targets yet
    pending: tuple[str, ...] = ()  # of `down`, those Prometheus has not scraped yet
    targets: tuple[tuple[str, str, str], ...] = ()  # (job, instance, health) of each, as Prometheus sees it
    alerts: tuple[tuple[str, str, str], ...] = ()  # (alert, what it is about, state): pending or firing


class Monitoring:
    def __init__(self, supervisor: Supervisor, frontend: Frontend, config: Config, scraped: dict[str, list[dict]],
                 timeout: float = 60.0):
        """`scraped`: the static configs of each job Prometheus scrapes besides the probes; `timeout`:
        how long its targets have to be up."""
        self.supervisor, self.frontend, self.scraped = supervisor, frontend, scraped
        self.settings, self.alerting, self.timeout = config.prometheus, config.alerting, timeout
        self.root = supervisor.root / "monitoring"
        self.prometheus_port, self.blackbox_port = config.target.prometheus_port, config.target.blackbox_port
        self.alertmanager_port = config.target.alertmanager_port
        self.url = f"http://127.0.0.1:{self.prometheus_port}"
        self.alertmanager_url = f"http://127.0.0.1:{self.alertmanager_port}"

    def apply(self, services: Services, domains: Domains) -> MonitoringReport:
        """Check, install and (re)load the configuration; wait until Prometheus scrapes every target."""
        with state_files(self.supervisor.root):
            return self._apply(services, domains)

    def _apply(self, services: Services, domains: Domains) -> MonitoringReport:
        groups = self.target_groups(services, domains)
        changed = {name: self._replace_if_changed(candidate) for name, candidate in self._configurations(domains)}
        rewritten, new_targets = self._write_targets(groups)
        started = self._ensure_programs()
        # a program (re)started just now read its new configuration; one that kept running reloads it
        stale = [program for program in PROGRAMS if changed[program] and not started[program]]
        try:
            if "blackbox" in stale:
                self._reload("blackbox", f"http://127.0.0.1:{self.blackbox_port}",
                             "blackbox_exporter_config_last_reload", (WEB_USER, self._password("blackbox")))
            if "alertmanager" in stale:
                self._reload("alertmanager", self.alertmanager_url, "alertmanager_config_last_reload",
                             (WEB_USER, self._password("alertmanager")))
            if "prometheus" in stale:
                self._reload("prometheus", self.url, "prometheus_config_last_reload")
        except MonitoringError:
            for program in PROGRAMS:  # so the next run installs and reloads again
                (self.root / f"{program}.yml").unlink(missing_ok=True)
            raise
        expected = group_targets(groups)
        if not (rewritten or any(changed.values()) or any(started.values())):
            return self._wait_for_targets(False, expected, changed=False)
        # new targets that answer (or none: only removed ones, which Prometheus drops by itself)
        if not started["prometheus"] and self._all_answer(new_targets):
            report = self._wait_for_targets(bool(stale), expected, timeout=VIEW_WAIT)
            if report.down and set(report.down) == set(report.pending):  # answered directly, not yet scraped
                return dataclasses.replace(report, verified_by="direct", down=())
            return report if not report.down else self._wait_for_targets(bool(stale), expected)
        return self._wait_for_targets(bool(stale), expected)

    def check(self, domains: Domains) -> None:
        """The next configuration of each program written and checked; MonitoringError when refused."""
        self._configurations(domains, always_check=True)

    def _configurations(self, domains: Domains, always_check: bool = False) -> list[tuple[str, Path]]:
        """The next prometheus.yml, blackbox.yml and alertmanager.yml, checked by promtool, the exporter and
        amtool when they differ from the running ones (those were checked when installed)."""
        (self.root / "next").mkdir(parents=True, exist_ok=True)
        for program in ("blackbox", "alertmanager"):
            self._password(program)
        replace_file(self.root / "alertmanager.url", self.alertmanager_url)  # for the sensor and the CLI
        rules = self.root / "rules.yml"
        replace_file(rules, yaml.safe_dump(alert_rules(self.settings.alert_window, self.settings.alert_for),
                                           sort_keys=False))
        prometheus, blackbox, manager = (self.root / "next" / f"{program}.yml"
                                         for program in ("prometheus", "blackbox", "alertmanager"))
        prometheus.write_text(yaml.safe_dump(self.prometheus_config(rules), sort_keys=False))
        blackbox.write_text(yaml.safe_dump(self.blackbox_config(domains), sort_keys=False))
        # it holds the receivers' secrets: readable by this user only, from its first byte
        replace_file(manager, yaml.safe_dump(alertmanager.configuration(self.alerting, self.root / "secrets"),
                                             sort_keys=False), mode=0o600)
        if always_check or not _same(prometheus, self.root / prometheus.name):
            self._check(_binary("promtool"), "check", "config", prometheus)
        if always_check or not _same(blackbox, self.root / blackbox.name):
            self._check(_binary("prometheus-blackbox-exporter"), "--config.check", f"--config.file={blackbox}")
        if always_check or not _same(manager, self.root / manager.name):
            self._check(_binary("amtool"), "check-config", manager)
        return [("prometheus", prometheus), ("blackbox", blackbox), ("alertmanager", manager)]

    def _ensure_programs(self) -> dict[str, bool]:
        """Which of the programs supervisord (re)started now, with the running configuration."""
        return {
            "blackbox": self.supervisor.ensure_program("blackbox", [
                str(_binary("prometheus-blackbox-exporter")), f"--config.file={self.root / 'blackbox.yml'}",
                f"--web.listen-address=127.0.0.1:{self.blackbox_port}", f"--web.config.file={self._web('blackbox')}"]),
            "alertmanager": self.supervisor.ensure_program("alertmanager", [
                str(_binary("prometheus-alertmanager")), f"--config.file={self.root / 'alertmanager.yml'}",
                f"--storage.path={self.root / 'alertmanager'}", f"--web.config.file={self._web('alertmanager')}",
                f"--web.listen-address=127.0.0.1:{self.alertmanager_port}",
                # one instance: no gossip port open on every interface
                f"--web.external-url={self.alertmanager_url}", "--cluster.listen-address="]),
            "prometheus": self.supervisor.ensure_program("prometheus", [
                str(_binary("prometheus")), f"--config.file={self.root / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.root / 'data'}", f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
                # its API is for its own UI: no other web page may read it (the default allows any origin)
                f"--web.cors.origin=http://127\\.0\\.0\\.1:{self.prometheus_port}",
                f"--storage.tsdb.retention.time={self.settings.retention}"]),
        }

    def prometheus_config(self, rules: Path) -> dict:
        """Every job, its targets discovered from its file under targets/."""
        jobs = [{"job_name": job, "file_sd_configs": [{"files": [str(self._targets_file(job))]}]}
                for job in self.scraped]
        interval = self.settings.scrape_interval
        manager = {"static_configs": [{"targets": [f"127.0.0.1:{self.alertmanager_port}"]}],
                   "basic_auth": {"username": WEB_USER, "password_file": str(self._password_file("alertmanager"))}}
        return {"global": {"scrape_interval": interval, "evaluation_interval": interval},
                "alerting": {"alertmanagers": [manager]},
                "rule_files": [str(rules)], "scrape_configs": [*jobs, self._probe_job()]}

    def target_groups(self, services: Services, domains: Domains) -> dict[str, list[dict]]:
        """The targets of each job, as file-based discovery reads them: the scraped ones, and a probe
        of each monitored domain (its job label `blackbox-<domain>`, its exporter module its own)."""
        lb, probes = self.frontend, []
        for name, domain in sorted(domains.items()):
            if domain.monitoring:
                scheme, port = ("https", lb.https_port) if domain.ssl else ("http", lb.http_port)
                probes.append({"targets": [f"{scheme}://{lb.address}:{port}{services[domain.service].health_path}"],
                               "labels": {"job": f"{PROBE_JOB}-{name}", "domain": name, "__param_module": name}})
        return {**self.scraped, PROBE_JOB: probes}

    def _probe_job(self) -> dict:
        return {
            "job_name": PROBE_JOB, "metrics_path": "/probe",
            "file_sd_configs": [{"files": [str(self._targets_file(PROBE_JOB))]}],
            "basic_auth": {"username": WEB_USER, "password_file": str(self._password_file("blackbox"))},
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": f"127.0.0.1:{self.blackbox_port}"},
            ],
        }

    def _targets_file(self, job: str) -> Path:
        return self.root / "targets" / f"{job}.json"

    def _write_targets(self, groups: dict[str, list[dict]]) -> tuple[bool, list[tuple[str, str, dict]]]:
        """Each job's targets file, replaced when it changed: whether any was, and the targets that
        were not in it before."""
        rewritten, new = False, []
        (self.root / "targets").mkdir(parents=True, exist_ok=True)
        for job, job_groups in groups.items():
            path = self._targets_file(job)
            before = json.loads(path.read_text()) if path.exists() else []
            if job_groups != before:
                replace_file(path, json.dumps(job_groups, indent=1))  # Prometheus reads it whole, never a part
                rewritten, known = True, group_targets({job: before})
                new += [target for target in _each_target(job, job_groups) if target[:2] not in known]
        return rewritten, new

    def _all_answer(self, targets: list[tuple[str, str, dict]]) -> bool:
        exporter = (WEB_USER, self._password("blackbox"))
        with ThreadPoolExecutor(ASKED_AT_ONCE) as pool:
            return all(pool.map(lambda target: self._answers(target, exporter), targets))

    def _answers(self, target: tuple[str, str, dict], exporter: tuple[str, str]) -> bool:
        """Whether a target answers when asked directly: a replica's metrics, or the exporter's probe of
        a domain (asked with `exporter`, its user and password)."""
        job, address, labels = target
        try:
            if "__param_module" in labels:
                response = requests.get(f"http://127.0.0.1:{self.blackbox_port}/probe", timeout=10,
                                        params={"target": address, "module": labels["__param_module"]},
                                        auth=exporter)
                return response.ok and "\nprobe_success 1" in response.text
            return requests.get(f"http://{address}{labels.get('__metrics_path__', '/metrics')}", timeout=5).ok
        except requests.RequestException:
            return False

    def blackbox_config(self, domains: Domains) -> dict:
        modules = {}
        for name, domain in sorted(domains.items()):
            http = {"method": "GET", "valid_status_codes": [200], "preferred_ip_protocol": "ip4",
                    "headers": {"Host": name}, "fail_if_not_ssl": domain.ssl}
            if domain.ssl:  # without a ca_file, the CAs this machine trusts
                ca = {"ca_file": str(self.frontend.ca_cert)} if self.frontend.ca_cert else {}
                http["tls_config"] = {**ca, "server_name": name}
            modules[name] = {"prober": "http", "timeout": "5s", "http": http}
        return {"modules": modules}

    @staticmethod
    def _check(*argv: object) -> None:
        result = _run(argv)
        if result.returncode != 0:
            raise MonitoringError(f"{Path(str(argv[0])).name} refused the generated configuration, so the running "
                                  f"one was kept: {(result.stderr or result.stdout).strip()[:2000]}")

    def _replace_if_changed(self, candidate: Path) -> bool:
        current = self.root / candidate.name
        if _same(candidate, current):
            return False
        replace_file(current, candidate.read_text(), mode=candidate.stat().st_mode & 0o777)
        return True

    def _password_file(self, program: str) -> Path:
        return self.root / f"{program}.password"

    def _web(self, program: str) -> Path:
        return self.root / f"{program}-web.yml"

    def _password(self, program: str) -> str:
        """The password the blackbox exporter or Alertmanager asks of every request, made once. Neither
        checks a request's origin (Alertmanager allows any): without it any web page could make the
        exporter probe a URL of its choosing, or silence Alertmanager's alerts."""
        password_file, web = self._password_file(program), self._web(program)
        if not (password_file.exists() and web.exists()):
            password = secrets.token_urlsafe(32)
            # Caddy's bcrypt; a random password needs no high cost, and the exporter caches the check
            hashed = _run([Path(sys.executable).parent / "caddy", "hash-password", "--algorithm", "bcrypt",
                           "--bcrypt-cost", "10"], input=f"{password}\n")
            if hashed.returncode != 0:
                raise MonitoringError(f"caddy hash-password failed: {hashed.stderr.strip()[:2000]}")
            replace_file(password_file, password, mode=0o600)
            web.write_text(yaml.safe_dump({"basic_auth_users": {WEB_USER: hashed.stdout.strip()}}))
        return password_file.read_text()

    def _reload(self, program: str, url: str, metric: str, auth: tuple[str, str] | None = None) -> None:
        """SIGHUP through supervisord, then wait until the program reports the reload in its metrics.
        Not Prometheus's HTTP lifecycle API: any web page could post to it (it has no origin check)."""
        before = self._gauges(url, metric, auth).get(f"{metric}_success_timestamp_seconds", 0)
        if before >= int(time.time()):
            time.sleep(1)  # the timestamp counts whole seconds: this reload's must be a later one
        signalled = time.monotonic()
        self.supervisor.rpc.signalProcess(program, "HUP")
        while time.monotonic() < signalled + RELOAD_TIMEOUT:
            values = self._gauges(url, metric, auth)
            if values.get(f"{metric}_success_timestamp_seconds", 0) > before:
                return
            if values.get(f"{metric}_successful") == 0 and time.monotonic() > signalled + 2:
                raise MonitoringError(f"{program} could not load its new configuration: see its log in "
                                      f"{self.supervisor.logs}")
            time.sleep(0.1)
        raise MonitoringError(f"{program} did not reload within {RELOAD_TIMEOUT:.0f} s of SIGHUP")

    @staticmethod
    def _gauges(url: str, prefix: str, auth: tuple[str, str] | None) -> dict[str, float]:
        """The unlabelled samples whose names start with `prefix`, from the program's /metrics."""
        try:
            exposition = requests.get(f"{url}/metrics", auth=auth, timeout=5).text
        except (requests.ConnectionError, requests.Timeout) as error:
            raise MonitoringUnavailable(f"{url}/metrics did not answer ({type(error).__name__}); "
                                        "supervisord restarts the program when it exits") from None
        samples = (line.split() for line in exposition.splitlines() if line.startswith(prefix))
        return {fields[0]: float(fields[1]) for fields in samples if len(fields) == 2}

    def _wait_for_targets(self, reloaded: bool, expected: set[tuple[str, str]], changed: bool = True,
                          timeout: float | None = None) -> MonitoringReport:
        """Until Prometheus scrapes exactly the expected targets, all up, with the rules loaded, or
        `timeout` (the monitoring timeout) has passed; the report counts what Prometheus has."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                targets = requests.get(f"{self.url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
                groups = requests.get(f"{self.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
            except (requests.RequestException, ValueError, KeyError):
                targets, groups = [], []
            present = {(t["labels"]["job"], t["labels"]["instance"]): t for t in targets}
            missing = expected - present.keys()
            # not settled yet: what Prometheus has not scraped, nor discovered, and what it still scrapes but
            # the configuration no longer has (the replicas a roll stopped)
            pending = [t["scrapeUrl"] for key, t in present.items() if t["health"] == "unknown" or key not in expected]
            pending += [f"{address} ({job}: not scraped yet)" for job, address in sorted(missing)]
            down = [t["scrapeUrl"] for key, t in present.items() if t["health"] == "down" and key in expected]
            down += pending
            rules = sum(len(group["rules"]) for group in groups)
            if targets and not down and rules or time.monotonic() > deadline:
                total = len(targets) + len(missing)
                seen = tuple(sorted((job, instance, t["health"]) for (job, instance), t in present.items()))
                return MonitoringReport(self.url, self.alertmanager_url, total - len(down), total, rules, reloaded,
                                        tuple(sorted(down)), changed, pending=tuple(sorted(pending)), targets=seen,
                                        alerts=self._alerts())
            time.sleep(0.2)


    def _alerts(self) -> tuple[tuple[str, str, str], ...]:
        """Prometheus's pending and firing alerts: what each is about (its domain, service or instance)."""
        try:
            found = requests.get(f"{self.url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        except (requests.RequestException, ValueError, KeyError):
            return ()
        about = ("domain", "service", "instance")
        return tuple(sorted((a["labels"].get("alertname", ""), next((a["labels"][k] for k in about if k in a["labels"]),
                                                                    "-"), a["state"]) for a in found))


def _run(argv: Sequence[object], **options) -> processes.CompletedProcess:
    """A monitoring tool run to its end; MonitoringError when it takes longer than TOOL_TIMEOUT."""
    try:
        return processes.run([str(arg) for arg in argv], capture_output=True, text=True, timeout=TOOL_TIMEOUT,
                             **options)
    except processes.TimeoutExpired:
        raise MonitoringError(f"{Path(str(argv[0])).name} took longer than {TOOL_TIMEOUT:.0f} s; the running "
                              "monitoring configuration was kept") from None


def alert_rules(window: str | None, hold: str | None) -> dict:
    """The shipped rules, with the SLO alerts' averaging window and every alert's `for:` replaced when
    given (shorter for tests and drills; the shipped file stays what promtool's unit tests test)."""
    with resources.as_file(resources.files("atl_pipeline.monitoring") / "rules.yml") as shipped:
        rules = yaml.safe_load(shipped.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if window:
                rule["expr"] = rule["expr"].replace("[5m]", f"[{window}]")
            if hold:
                rule["for"] = hold
    return rules


def group_targets(groups: dict[str, list[dict]]) -> set[tuple[str, str]]:
    """(job, address) of every target of these jobs' target groups, as Prometheus labels them."""
    return {target[:2] for job, job_groups in groups.items() for target in _each_target(job, job_groups)}


def _each_target(job: str, groups: list[dict]) -> list[tuple[str, str, dict]]:
    """(job label, address, labels) of each target: a group's `job` label names the job it shows under."""
    return [(group.get("labels", {}).get("job", job), address, group.get("labels", {}))
            for group in groups for address in group["targets"]]


def _same(candidate: Path, current: Path) -> bool:
    return current.exists() and filecmp.cmp(candidate, current, shallow=False)


def _binary(name: str) -> Path:
    found = shutil.which(name)
    if found is None:
        raise MonitoringError(f"{name} is not installed: install the Debian package {BINARIES[name]} "
                              f"(apt-get install -y --no-install-recommends {BINARIES[name]})")
    return Path(found)

