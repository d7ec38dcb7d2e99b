"""The policy rules (atl_pipeline/policy/rules.rego, evaluated in-process by regopy): each default
found where domains.yml says it, the operators' exceptions, the project's own rules. Checkov and
the stage that blocks an apply: tests/test_policy_stage.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from atl_pipeline.config import load_config
from atl_pipeline.config.model import PolicyException
from atl_pipeline.policy import PolicyError, excepted, rule_findings
from tests.conftest import REPO

BROKEN = """\
services:
  web:
    command: [app, --port, "{port}", --db-password, hunter2-but-longer]
    port: 9000
  worker:
    command: [worker, "API_TOKEN=abc123def456"]
    port: 9200
    internal: true
domains:
  - name: a.example.org
    service: web
    ssl: false
    monitoring: false
    replicas: 1
  - name: b.example.org
    service: web
    replicas: 1
"""


def findings(path: Path, plan: dict | None = None) -> list[tuple[str, str, str | None]]:
    """(policy, where, domain) of each finding, where as `line:column`."""
    return sorted((f.policy, f.where.split(":", 1)[1], f.domain)
                  for f in rule_findings(load_config(path, name="domains.yml"), path.parent / "policies", plan))


def test_each_default_is_found_at_its_line(write):
    assert findings(write(BROKEN)) == [
        ("plaintext_secret", "3:53", None),  # the value after --db-password
        ("plaintext_secret", "6:23", None),  # KEY=value
        ("production_monitoring", "13:17", "a.example.org"),
        ("production_replicas", "14:15", "a.example.org"),
        ("production_replicas", "17:15", "b.example.org"),
        ("production_ssl", "12:10", "a.example.org"),
    ]


def test_a_replica_count_left_to_its_default_is_found_at_its_domain(write):
    path = write("services: {web: {command: [app], port: 9000}}\ndomains:\n  - {name: a.example.org, service: web}\n")
    assert findings(path) == [("production_replicas", "3:5", "a.example.org")]


def test_outside_production_and_for_domains_not_deployed_the_production_rules_hold_back(write):
    clean = BROKEN.replace("--db-password, hunter2-but-longer", "--db-password-file, /run/secrets/db")
    assert findings(write("environment: staging\n" + clean.replace('"API_TOKEN=abc123def456"', "run"))) == []
    disabled = BROKEN.replace("    replicas: 1\n  - name: b", "    replicas: 1\n    enabled: false\n  - name: b")
    assert {domain for _, _, domain in findings(write(disabled))} == {None, "b.example.org"}


def test_an_autoscaled_service_may_not_scale_to_one_replica_in_production(write):
    path = write("services:\n  web:\n    command: [app]\n    port: 9000\n    autoscale: {min: 1, max: 4, target: "
                 "{requests_per_second_per_replica: 10}}\n"
                 "domains: [{name: a.example.org, service: web, replicas: 2}]\n")
    assert findings(path) == [("production_replicas", "5:22", None)]


def test_ssh_open_to_the_world_is_found_in_the_configuration_and_in_the_plan(tmp_path: Path):
    example = (REPO / "examples/hcloud/domains.yml").read_text()
    path = tmp_path / "domains.yml"
    path.write_text(example.replace("ssh_from: [203.0.113.0/24]", "ssh_from: [203.0.113.0/24, 0.0.0.0/0]"))
    assert ("ssh_not_world", "12:30", None) in findings(path)
    # a plan as `terraform show -json` writes it: the hcloud provider cannot be downloaded here to make one
    path.write_text(example)
    plan = {"resource_changes": [{"address": "hcloud_firewall.servers", "type": "hcloud_firewall", "change": {
        "actions": ["update"], "after": {"rule": [{"port": "22", "protocol": "tcp", "source_ips": ["::/0"]}]}}}]}
    assert findings(path) == [] and findings(path, plan) == [("ssh_not_world", "12:13", None)]


def test_an_exception_lets_a_finding_through_with_its_reason_and_only_the_one_it_names(write):
    found = rule_findings(load_config(write(BROKEN)), Path("no-policies"))
    exceptions = [PolicyException(policy="production_replicas", domain="b.example.org", reason="a test domain"),
                  PolicyException(policy="plaintext_secret", reason="fixture values")]
    result = excepted(found, exceptions)
    assert sorted((f.policy, f.domain, f.excepted) for f in result if f.excepted) == [
        ("plaintext_secret", None, "fixture values"), ("plaintext_secret", None, "fixture values"),
        ("production_replicas", "b.example.org", "a test domain")]
    assert [f.domain for f in result if f.policy == "production_replicas" and not f.excepted] == ["a.example.org"]


def test_the_projects_own_rules_are_evaluated_beside_the_shipped_ones(write, tmp_path: Path):
    path = write("services: {web: {command: [app], port: 9000}}\n"
                 "domains: [{name: a.example.org, service: web, replicas: 2, group: legacy}]\n")
    (path.parent / "policies").mkdir()
    (path.parent / "policies" / "groups.rego").write_text(
        'package atl.policy\n\ndeny contains finding if {\n  some i, domain in input.config.domains\n'
        '  domain.group == "legacy"\n  finding := {"policy": "no_legacy", "domain": domain.name,\n'
        '    "path": ["domains", i, "group"], "message": "legacy is retired"}\n}\n')
    assert findings(path) == [("no_legacy", "2:67", "a.example.org")]


@pytest.mark.parametrize("text, said", [
    ("package atl.policy\n\ndeny contains x if {\n", "could not be evaluated"),
    ('package atl.policy\n\ndeny contains "just a string" if { true }\n', "must be a set of objects"),
])
def test_a_broken_project_rule_is_an_error_that_names_what_to_fix(write, text: str, said: str):
    path = write("services: {web: {command: [app], port: 9000}}\n"
                 "domains: [{name: a.example.org, service: web, replicas: 2}]\n")
    (path.parent / "policies").mkdir()
    (path.parent / "policies" / "broken.rego").write_text(text)
    with pytest.raises(PolicyError, match=said):
        findings(path)
