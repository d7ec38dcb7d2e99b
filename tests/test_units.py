"""The in-process halves of modules whose own tests run real programs: the redactor and
secret references (tests/test_secrets.py runs Terraform), the plan stage's helpers and guards
(tests/test_terraform_stages.py), the roll back (tests/test_runtime.py), and the health probes
against an HTTP server in this process (the health stage's tests probe through Caddy). Fast,
so that `make mutation` can run them against every mutant (docs/testing.md)."""

from __future__ import annotations

import json
import math
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from atl_pipeline import secrets
from atl_pipeline.config import load_config
from atl_pipeline.config.model import PORT_BLOCK, State
from atl_pipeline.health import DomainHealth, SloReport, probe_domain, probe_domains
from atl_pipeline.project import Project
from atl_pipeline.runtime.http import Frontend
from atl_pipeline.runtime.rolling import Runtime, ServiceOutcome, domains_record, record_of
from atl_pipeline.targets import target_of
from atl_pipeline.targets.outputs import DomainOutput, ServiceOutput
from atl_pipeline.terraform.plan import PlanSummary
from atl_pipeline.terraform.render import render, write
from atl_pipeline.terraform.stages import (
    DestroyNotApproved,
    InvalidConfig,
    TerraformPlan,
    _addresses,
    _prune,
    _written_before,
    apply_plan,
    make_plan,
    postgres_address,
    terraform,
)
from atl_pipeline.validation import validate
from tests import ports
from tests.conftest import REPO
from tests.ports import reserve_block

# secrets


@pytest.mark.parametrize("environ", [{}, {"ATL_TOKEN": ""}])
def test_an_unset_or_empty_secret_says_what_to_export(environ):
    with pytest.raises(secrets.SecretError) as raised:
        secrets.resolve("env:ATL_TOKEN", environ)
    assert str(raised.value) == ("the secret env:ATL_TOKEN is not set: export ATL_TOKEN in the environment of the "
                                 "pipeline (the shell that runs `atl`, or `make run`/`dg dev`)")


@pytest.mark.parametrize(("secret", "text", "shown"), [
    ("t0ken", "Authorization: t0ken", "Authorization: ***"),
    ("abcd", "a four-character secret abcd", "a four-character secret ***"),
    ("postgres://atl:pa55word@db:5432/x", "auth failed for pa55word", "auth failed for ***"),
    ("host=db password=s3cret user=atl", "password s3cret refused", "password *** refused"),
])
def test_the_redactor_masks_secrets_and_the_passwords_inside_them(secret, text, shown):
    assert secrets.Redactor([secret])(text) == shown


def test_the_redactor_masks_the_longest_secret_first():
    """`bcde` inside `abcdef` must not leave `a***f`, which shows most of the longer secret."""
    assert secrets.Redactor(["bcde", "abcdef"])("abcdef") == "***"


# the tests' own ports


@pytest.mark.parametrize("path", ["domains.yml", "examples/hcloud/domains.yml", "tests/golden/imported/domains.yml"])
def test_the_tests_ports_are_above_every_fixed_port_of_the_test_configurations(path):
    """A test's sshd or service handed a port inside a configuration's own would fail its validation."""
    config = load_config(REPO / path).config
    fixed = [*config.target.ports.values(), *(service.port + PORT_BLOCK - 1 for service in config.services.values())]
    assert max(fixed) < ports.FIRST


# the plan stage: its helpers, and the guards that hold before Terraform runs


@pytest.mark.parametrize(("connection", "address"), [
    ("postgres://atl:pw@db.example.org:5433/state", "db.example.org:5433"),
    ("postgres://atl:pw@db.example.org/state", "db.example.org:5432"),
    ("postgres:///state", ""),  # the default socket
    ("host=db.example.org port=6432 dbname=state", "db.example.org:6432"),
    ("host=db.example.org dbname=state", "db.example.org:5432"),
    ("host=/var/run/postgresql dbname=state", ""),  # a socket folder, not a host
    ("dbname=state", ""),
])
def test_the_state_databases_address_is_read_from_its_connection_string(connection, address):
    assert postgres_address(connection) == address


def test_the_runner_gets_the_backends_connection_and_the_tokens_and_masks_them(tmp_path, monkeypatch):
    monkeypatch.setenv("ATL_TEST_PG", "postgres://atl:pa55word@db.example.org:5433/state")
    monkeypatch.setenv("ATL_TEST_TOKEN", "t0ken-1234")
    monkeypatch.setenv("ATL_LOCK_TIMEOUT", "42")
    project = Project(tmp_path)
    runner = terraform(project, State(backend="pg", conn_str="env:ATL_TEST_PG"), "staging",
                       (("HCLOUD_TOKEN", "env:ATL_TEST_TOKEN"),))
    assert (runner.workdir, runner.home) == (tmp_path / ".atl/terraform/staging", tmp_path / ".atl/terraform")
    assert runner.env == {"HCLOUD_TOKEN": "t0ken-1234",
                          "PG_CONN_STR": "postgres://atl:pa55word@db.example.org:5433/state"}
    assert (runner.backend, runner.backend_address, runner.lock_timeout) == ("pg", "db.example.org:5433", "42s")
    assert runner.redact("t0ken-1234 pa55word") == "*** ***"
    local = terraform(project, State(), "production")
    assert (local.env, local.backend, local.backend_address) == ({}, "local", "")


def test_only_the_hcloud_target_has_provider_tokens():
    hcloud = load_config(REPO / "examples" / "hcloud" / "domains.yml").config
    assert target_of(hcloud).provider_secrets() == (("HCLOUD_TOKEN", "env:HCLOUD_TOKEN"),
                                                    ("CLOUDFLARE_API_TOKEN", "env:CLOUDFLARE_API_TOKEN"))
    assert target_of(load_config(REPO / "domains.yml").config).provider_secrets() == ()


def test_one_domain_is_planned_through_its_resource_and_its_services():
    target = target_of(load_config(REPO / "domains.yml").config)
    assert _addresses(target, "api.allthingslinux.org") == ('terraform_data.domain["api.allthingslinux.org"]',
                                                            'terraform_data.service["backend-api"]')
    with pytest.raises(InvalidConfig) as raised:
        _addresses(target, "nope.example.org")
    assert str(raised.value) == (f"no enabled domain nope.example.org in "
                                 f"{', '.join(d.name for d in target.config.serving)}")


def test_a_domain_of_a_file_with_none_enabled_is_not_found(write):
    config = load_config(write("services: {web: {command: [web], port: 9000}}\n"
                               "domains: [{name: a.org, service: web, enabled: false}]\n")).config
    with pytest.raises(InvalidConfig) as raised:
        _addresses(target_of(config), "a.org")
    assert str(raised.value) == "no enabled domain a.org in the file"


def test_files_written_before_are_recognized_exactly(tmp_path):
    rendered = render(load_config(REPO / "domains.yml").config, REPO / "terraform_templates")
    write(rendered, tmp_path)
    assert _written_before(rendered, tmp_path)
    next(tmp_path.glob("*.tf")).write_text("# edited\n")
    assert not _written_before(rendered, tmp_path)


def test_the_newest_plans_are_kept(tmp_path):
    for age in range(25):  # named against their age: plan-00 is the newest
        plan = tmp_path / f"plan-{age:02}.tfplan"
        plan.touch()
        os.utime(plan, (1_000_000 - age, 1_000_000 - age))
    _prune(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"plan-{age:02}.tfplan" for age in range(20)]


def test_a_configuration_with_findings_is_never_planned(write, tmp_path):
    path = write("services: {web: {command: [sh, -c, web], port: 30000}}\ndomains: [{name: a.org, service: web}]\n")
    with pytest.raises(InvalidConfig) as raised:
        make_plan(Project(tmp_path), validate(load_config(path)), "run-1")
    assert str(raised.value) == f"{path} has 1 findings; fix them before planning"


def test_a_destructive_plan_is_not_applied_without_approval(tmp_path):
    summary = PlanSummary.from_show_json({"resource_changes": [
        {"address": 'terraform_data.domain["a.org"]', "change": {"actions": ["delete"]}}]})
    plan = TerraformPlan(tmp_path, tmp_path / "run-1.tfplan", summary, True, False, State(), "production")
    with pytest.raises(DestroyNotApproved) as raised:
        apply_plan(Project(tmp_path), plan)
    assert str(raised.value) == ("this plan deletes or replaces 1 resources and was not approved: plan again with the "
                                 "approval (`atl infra up --approve-destroy`)")


# the roll back, over a runtime that records what it is asked to deploy


class Recording(Runtime):
    def __init__(self, deployed_file: Path):
        self.deployed_file = deployed_file
        self.deploys: list[tuple[dict, dict]] = []

    @property
    def frontend(self) -> Frontend:
        return Frontend("127.0.0.1", 8000, 8443)

    def deploy(self, services, domains):
        self.deploys.append((services, domains))
        return [ServiceOutcome(name, spec.release, "rolled") for name, spec in services.items()]

    def drift(self, services, domains):
        return []

    def status(self):
        return {}

    def stop(self):
        return False


def output(release: str) -> dict:
    return {"cpu_millicores": 100, "health_path": "/healthz", "memory_bytes": 2**20, "port": 9000, "release": release,
            "replicas": 1, "standby_port": 9050, "ports": [9000], "standby_ports": [9050]}


DOMAIN = {"cpu_millicores": 100, "memory_bytes": 2**20, "monitoring": True, "replicas": 1, "service": "api",
          "ssl": True, "url": "https://a.org"}
RECORD = {
    "services": {"api": {**output("api-2"), "slot": 1, "group": "api-2"},
                 "web": {**output("web-1"), "slot": 0, "group": "web-1"}},
    "previous": {"api": {**output("api-1"), "slot": 0, "group": "api-1"}},
    "domains": {"a.org": DOMAIN},
}


def test_a_roll_back_deploys_the_previous_release_of_what_failed_and_the_rest_as_it_runs(tmp_path):
    runtime = Recording(tmp_path / "deployed.json")
    runtime.deployed_file.write_text(json.dumps(RECORD))
    outcomes = runtime.roll_back({"api": "api-2"})
    assert runtime.deploys == [({"api": ServiceOutput(**output("api-1")), "web": ServiceOutput(**output("web-1"))},
                                {"a.org": DomainOutput(**DOMAIN)})]
    assert [(outcome.name, outcome.release) for outcome in outcomes] == [("api", "api-1"), ("web", "web-1")]


FIRST = {"services": RECORD["services"], "domains": RECORD["domains"]}  # a first deployment replaced nothing


@pytest.mark.parametrize(("record", "releases"), [(RECORD, {"api": "api-1"}), (RECORD, {"web": "web-1"}),
                                                  (FIRST, {"api": "api-2"})])
def test_nothing_is_rolled_back_that_no_longer_runs_or_has_no_previous_release(tmp_path, record, releases):
    runtime = Recording(tmp_path / "deployed.json")
    runtime.deployed_file.write_text(json.dumps(record))
    assert runtime.roll_back(releases) == []
    assert runtime.deploys == []


def test_a_record_keeps_the_release_each_service_replaced_and_since_when_it_serves_the_current():
    first = record_of({}, {"api": ServiceOutput(**output("api-1"))}, {"api": 0})
    rolled = record_of(first, {"api": ServiceOutput(**output("api-2"))}, {"api": 1})
    unchanged = record_of(rolled, {"api": ServiceOutput(**output("api-2"))}, {"api": 1})
    assert first["previous"] == {}
    assert rolled["previous"]["api"]["release"] == unchanged["previous"]["api"]["release"] == "api-1"
    assert rolled["services"]["api"]["since"] > first["services"]["api"]["since"]
    assert unchanged["services"]["api"]["since"] == rolled["services"]["api"]["since"]


def test_a_held_roll_back_stays_until_terraform_asks_for_another_release(tmp_path):
    runtime = Recording(tmp_path / "deployed.json")
    runtime.deployed_file.write_text(json.dumps(RECORD))
    runtime.roll_back({"api": "api-2"}, hold=True)
    assert runtime.held() == {"api": "api-2"}
    runtime.deployed_file.write_text(json.dumps({**RECORD, **record_of(
        RECORD, {"api": ServiceOutput(**output("api-1"))}, {"api": 0}), "held": {"api": "api-2"}}))
    asked = {"api": ServiceOutput(**output("api-2")), "web": ServiceOutput(**output("web-1"))}
    assert runtime.desired(asked)["api"].release == "api-1"  # what Terraform still says: held back
    assert runtime.desired({**asked, "api": ServiceOutput(**output("api-3"))})["api"].release == "api-3"
    before = runtime.deployed()
    assert record_of(before, {"api": ServiceOutput(**output("api-1"))}, {"api": 0})["held"] == {"api": "api-2"}
    assert record_of(before, {"api": ServiceOutput(**output("api-3"))}, {"api": 1})["held"] == {}


def test_without_a_deployment_nothing_runs_and_nothing_is_rolled_back(tmp_path):
    runtime = Recording(tmp_path / "deployed.json")
    assert (runtime.deployed(), runtime.deployed_services(), runtime.deployed_domains()) == ({}, {}, {})
    assert runtime.roll_back({"api": "api-2"}) == []


@pytest.mark.parametrize("groups", [{"api": "api-2"}, None])  # supervisord's groups on this machine; none on hcloud
def test_what_a_deployment_records_is_read_back(tmp_path, groups):
    services, domains = {"api": ServiceOutput(**output("api-2"))}, {"a.org": DomainOutput(**DOMAIN)}
    runtime = Recording(tmp_path / "deployed.json")
    runtime.deployed_file.write_text(json.dumps({**record_of({}, services, {"api": 1}, groups),
                                                 "domains": domains_record(domains)}))
    (api,) = runtime.deployed_services().values()
    assert (api.output(), api.slot, api.group) == (services["api"], 1, "api-2" if groups else "")
    assert runtime.deployed_domains() == domains


# health: the SLO report, and the probes against an HTTP server in this process


def test_a_percentile_is_a_measured_latency():
    health = DomainHealth("a.org", "web", 5, 0, (5.0, 1.0, 3.0, 2.0, 4.0), requests=6)
    assert [health.percentile(fraction) for fraction in (0.5, 0.99, 1.0)] == [3.0, 5.0, 5.0]
    assert math.isnan(DomainHealth("a.org", "web", 1, 1, (), requests=1).percentile(0.5))


@pytest.mark.parametrize(("report", "met"), [(SloReport(99.94, 0.0009), "yes"), (SloReport(100.0, 0.001), "no")])
def test_the_slo_rows_say_whether_each_objective_is_met(report, met):
    assert report.rows() == [
        ("average response", "< 100 ms", f"{report.average_ms:.1f} ms", met),
        ("error rate", "< 0.1%", f"{report.error_rate:.2%}", met),
    ]


def test_the_slo_report_averages_every_successful_probe_and_counts_every_failure():
    report = SloReport.of([DomainHealth("a.org", "web", 2, 0, (10.0, 20.0), requests=3),
                           DomainHealth("b.org", "web", 2, 1, (60.0,), "HTTP 500", requests=3)])
    assert (report.average_ms, report.error_rate) == (30.0, 0.25)
    nothing = SloReport.of([])
    assert math.isnan(nothing.average_ms) and nothing.error_rate == 1.0


class Site(BaseHTTPRequestHandler):
    """Answers by Host: `up` 200, `down` 503, `late` 503 twice then 200, `flaky` 200 then 500 every other
    time, `slow` 200 after 20 ms; on its health path only (`/ready` for `api.` hosts, else `/healthz`)."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the probes' session expects
    counts: dict[str, int] = {}

    def do_GET(self):
        host = self.headers["Host"]
        count = self.counts[host] = self.counts.get(host, 0) + 1
        kind = host.split(".")[0]
        status = {"down": 503, "late": 503 if count <= 2 else 200,
                  "flaky": 500 if count % 2 == 0 else 200}.get(kind, 200)
        if kind == "slow":
            threading.Event().wait(0.02)
        if self.path != ("/ready" if kind == "api" else "/healthz"):
            status = 404
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def frontend():
    """The site on 127.0.0.1 as the load balancer's HTTP port; its HTTPS port is one nothing listens on."""
    Site.counts = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Site)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield Frontend("127.0.0.1", server.server_address[1], reserve_block())
    server.shutdown()
    server.server_close()


def test_a_healthy_domain_answers_every_probe_with_its_latency(frontend):
    health = probe_domain(frontend, "slow.example.org", False, "web", "/healthz", probes=3)
    assert (health.domain, health.service, health.probes, health.failures, health.error, health.requests) == (
        "slow.example.org", "web", 3, 0, "", 4)
    assert len(health.latencies_ms) == 3 and all(20 <= latency < 5000 for latency in health.latencies_ms)


def test_a_domain_that_never_answers_well_fails_at_its_first_answer(frontend):
    assert probe_domain(frontend, "down.example.org", False, "web", "/healthz", settle=0) == DomainHealth(
        "down.example.org", "web", 1, 1, (), "HTTP 503", requests=1)


def test_a_domain_that_answers_within_the_settle_window_is_healthy(frontend):
    health = probe_domain(frontend, "late.example.org", False, "web", "/healthz", probes=2, settle=1.0)
    assert (health.probes, health.failures, len(health.latencies_ms), health.requests) == (2, 0, 2, 5)


def test_failed_probes_are_counted_with_the_last_reason(frontend):
    health = probe_domain(frontend, "flaky.example.org", False, "web", "/healthz", probes=4, settle=0)
    assert (health.probes, health.failures, len(health.latencies_ms), health.error) == (4, 2, 2, "HTTP 500")


def test_a_tls_domain_is_probed_over_tls_on_the_https_port(frontend):
    plain = Frontend(frontend.address, frontend.https_port, frontend.http_port)  # HTTPS port: the plain site
    health = probe_domain(plain, "up.example.org", True, "web", "/healthz", settle=0)
    assert (health.probes, health.failures) == (1, 1) and health.error.startswith("SSLError"), health


def test_every_domain_is_probed_on_its_services_health_path_and_port_in_name_order(frontend):
    domains = {"www.example.org": DomainOutput(**{**DOMAIN, "service": "web", "ssl": False}),
               "api.example.org": DomainOutput(**{**DOMAIN, "ssl": False}),
               "tls.example.org": DomainOutput(**{**DOMAIN, "service": "web"})}  # HTTPS: a port nothing listens on
    services = {"api": ServiceOutput(**{**output("api-1"), "health_path": "/ready"}),
                "web": ServiceOutput(**output("web-1"))}
    results = probe_domains(frontend, domains, services, probes=1, settle=0)
    assert [(r.domain, r.service, r.probes, r.failures) for r in results] == [
        ("api.example.org", "api", 1, 0), ("tls.example.org", "web", 1, 1), ("www.example.org", "web", 1, 0)]
