"""Declarative automation: whichever stage a person materializes alone, the later stages
follow; a whole run, a plan, or a new configuration alone starts nothing.

The stages here are stand-ins with the real definitions' keys, dependencies, checks and
automation conditions (their work is not what is tested; their checks pass); the evaluation is
Dagster's own, on a real instance. The sensor may run the later stages in one run or in a
chain of runs (the real daemon does the latter: test_e2e_dagster.py); either way every later
stage runs.
"""

from __future__ import annotations

import dagster as dg
import pytest

from atl_pipeline.definitions import loaded

LATER = {"service_deployment", "health_check", "monitoring", "certificates"}


def stand_in(spec: dg.AssetSpec, checks: list[dg.AssetCheckSpec]) -> dg.AssetsDefinition:
    @dg.multi_asset(specs=[spec], check_specs=checks, name=spec.key.path[-1])
    def stage():
        yield dg.MaterializeResult(asset_key=spec.key)
        for check in checks:
            yield dg.AssetCheckResult(asset_key=spec.key, check_name=check.name, passed=True)

    return stage


class Automation:
    """The stages' conditions evaluated tick after tick, as the automation sensor does."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance = instance
        self.stages = [stand_in(spec, [check for check in assets.check_specs if check.asset_key == spec.key])
                       for assets in loaded().assets if isinstance(assets, dg.AssetsDefinition)
                       for spec in assets.specs]
        self.cursor = dg.evaluate_automation_conditions(defs=self.stages, instance=instance).cursor

    def run(self, *names: str) -> None:
        """A run of these stages, with them as its selection."""
        dg.materialize(self.stages, instance=self.instance, selection=list(names))

    def requested(self) -> set[str]:
        """What the next tick requests."""
        result = dg.evaluate_automation_conditions(defs=self.stages, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        return {key.to_user_string() for key in self._keys() if result.get_num_requested(key)}

    def followed(self) -> set[str]:
        """Every stage the automation sensor runs from here, tick after tick, until it requests nothing."""
        followed = set()
        while requested := self.requested():
            followed |= requested
            self.run(*requested)  # the run the automation sensor launches
        return followed

    def _keys(self) -> list[dg.AssetKey]:
        return [spec.key for assets in self.stages for spec in assets.specs]


@pytest.fixture(scope="module")
def automation():
    """One instance for the module: each test leaves nothing requested, as it found it."""
    with dg.instance_for_test() as instance:
        automation = Automation(instance)
        automation.run(*(key.to_user_string() for key in automation._keys()))  # a whole deploy
        assert automation.requested() == set()
        yield automation


@pytest.mark.parametrize("alone, follow", [
    ("service_deployment", LATER - {"service_deployment"}),
    ("health_check", {"monitoring", "certificates"}),
    ("monitoring", {"certificates"}),
    ("terraform_apply", LATER),
])
def test_a_stage_materialized_alone_is_followed_by_the_later_ones(automation: Automation, alone, follow):
    automation.run(alone)
    assert automation.followed() == follow


@pytest.mark.parametrize("stages", [
    ("domain_config", "validated_config", "terraform_plan"),  # `atl infra plan`
    ("domain_config", "validated_config"),
    ("certificates",),
])
def test_a_plan_or_a_new_configuration_alone_starts_nothing(automation: Automation, stages):
    automation.run(*stages)
    assert automation.requested() == set()
    automation.run(*(key.to_user_string() for key in automation._keys()))  # leave it as a whole deploy left it
    assert automation.requested() == set()


def test_the_automation_sensor_runs_by_default_and_tags_its_runs():
    sensor = loaded().resolve_sensor_def("atl_automation")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.run_tags == {"atl/trigger": "automation"}
