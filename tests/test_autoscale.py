"""Auto-scaling's arithmetic and its place in the configuration (atl_pipeline.operations.autoscale): the
counts a deploy declares, Kubernetes' rule for the desired count, and the scale-down window."""

from __future__ import annotations

import pytest

from atl_pipeline.config import load_config
from atl_pipeline.config.model import Autoscale
from atl_pipeline.findings import ConfigError
from atl_pipeline.operations.autoscale import declared_counts, recommend, record_decisions, stabilized, status, step
from atl_pipeline.report import deployment_metadata
from atl_pipeline.runtime.http import Frontend
from atl_pipeline.runtime.rolling import Replica, ServiceOutcome
from atl_pipeline.terraform.render import terraform_inputs
from atl_pipeline.validation import validate

BOUNDS = Autoscale.model_validate({"min": 1, "max": 4, "target": {"requests_per_second_per_replica": 50},
                                   "scale_down_after": "60s"})
SCALING = """\
target: {kind: local, capacity: {cpu: '8', memory: 16Gi}}
services:
  web:
    command: [app, "{port}"]
    port: 9200
    autoscale: {min: 1, max: 4, target: {requests_per_second_per_replica: 50}, scale_down_after: 60s}
domains: [{name: a.org, service: web, replicas: REPLICAS}]
"""


@pytest.mark.parametrize(("current", "observed", "expected"), [
    (1, 50, 1), (1, 54, 1),  # within the 10% tolerance
    (1, 160, 4), (2, 120, 4),  # ceil(current x observed / target)
    (3, 10, 1), (1, 1000, 4), (4, 0, 1),  # never outside the bounds
    (2, 40, 2),  # 2 x 0.8 = 1.6: still 2
])
def test_the_desired_count_is_kubernetes_rule_within_the_bounds(current, observed, expected):
    assert recommend(BOUNDS, current, observed, 50) == expected


def test_up_at_once_down_only_after_the_metric_stayed_low_for_the_window():
    assert stabilized(BOUNDS, 1, [(0, 1), (15, 3)], now=15) == 3
    low_since_30 = [(0, 3), (15, 3), (30, 1), (45, 1), (60, 1)]
    assert stabilized(BOUNDS, 3, low_since_30, now=60) == 3  # a 3 within the last 60 s
    assert stabilized(BOUNDS, 3, [*low_since_30, (75, 1), (90, 1)], now=90) == 1
    assert stabilized(BOUNDS, 3, [(40, 1), (55, 1)], now=55) == 3  # not watched for 60 s yet


def test_a_cpu_target_is_a_share_of_the_cpu_request():
    bounds = BOUNDS.model_copy(update={"target": BOUNDS.target.model_copy(
        update={"requests_per_second_per_replica": None, "cpu_per_replica": "70%"})})
    scaled = step("web", bounds, 2, 1.4, (), now=0)  # each replica uses 140% of its CPU request
    assert (scaled.desired, scaled.metric) == (4, "cpu_per_replica 1.40 (target 0.7)")
    assert step("web", bounds, 2, 0.75, (), now=0).desired == 2  # within 10% of 70%


def test_the_deployment_shows_each_scaling_services_bounds_count_and_last_decision(write, tmp_path):
    config = load_config(write(SCALING.replace("REPLICAS", "1"))).config
    decisions = tmp_path / "autoscale.json"
    outcomes = [ServiceOutcome("web", "r1", "rolled", (Replica(9200, 1), Replica(9201, 2)))]
    table = deployment_metadata(outcomes, Frontend("127.0.0.1", 80, 443), status(config, decisions))["autoscale"]
    assert table.splitlines()[2] == "| web | 1 to 4 | 2 | none yet |"
    record_decisions(decisions, [step("web", BOUNDS, 1, 100, (), now=0)], at=0)
    table = deployment_metadata(outcomes, Frontend("127.0.0.1", 80, 443), status(config, decisions))["autoscale"]
    assert table.splitlines()[2] == ("| web | 1 to 4 | 2 | 1 -> 2 at 1970-01-01 00:00:00 UTC "
                                     "(requests_per_second_per_replica 100.00 (target 50)) |")


def test_a_deploy_keeps_the_running_count_within_the_new_bounds(write):
    config = load_config(write(SCALING.replace("REPLICAS", "2"))).config
    assert declared_counts(config, {}, {}) == {"web": 2}  # where it starts
    assert declared_counts(config, {"web": 3}, {}) == {"web": 3}  # what runs
    assert declared_counts(config, {"web": 3}, {"web": 4}) == {"web": 4}  # what the autoscaler asks
    assert declared_counts(config, {"web": 9}, {}) == {"web": 4}  # clamped to the bounds
    inputs = terraform_inputs(config, {"web": 3})
    assert inputs["services"]["web"]["replicas"] == inputs["domains"]["a.org"]["replicas"] == 3


def test_a_start_outside_the_bounds_is_a_located_finding(write):
    path = write(SCALING.replace("REPLICAS", "5"))
    assert [(f.line, f.column, f.message) for f in validate(load_config(path)).findings] == [
        (6, 16, "service 'web' starts at 5 replicas, outside its autoscale bounds (1 to 4): set its domains' "
                "replicas between them")]


def test_capacity_is_checked_at_the_most_replicas(write):
    path = write(SCALING.replace("REPLICAS", "1").replace("cpu: '8'", "cpu: '0.5'"))  # 4 x 250m > 500m
    (finding,) = validate(load_config(path)).findings
    assert "the domains request 1 cpu" in finding.message


@pytest.mark.parametrize(("autoscale", "said"), [
    ("{min: 3, max: 2, target: {cpu_per_replica: 70%}}", "min (3) is more than max (2)"),
    ("{min: 1, max: 2, target: {}}", "give one target"),
    ("{min: 1, max: 2, target: {cpu_per_replica: 70%, requests_per_second_per_replica: 5}}", "give one target"),
    ("{min: 1, max: 2, target: {cpu_per_replica: 170%}}", "should match pattern"),
    ("{min: 1, max: 2, target: {requests_per_second_per_replica: true}}", "'true' is a boolean to YAML"),
    ("{min: 1, max: 2, target: {requests_per_second_per_replica: 2.5}}", "'2.5' is not a whole number"),
])
def test_bad_bounds_are_refused(write, autoscale, said):
    text = SCALING.replace("REPLICAS", "1").replace(
        "{min: 1, max: 4, target: {requests_per_second_per_replica: 50}, scale_down_after: 60s}", autoscale)
    with pytest.raises(ConfigError) as raised:
        load_config(write(text))
    assert said in str(raised.value)
