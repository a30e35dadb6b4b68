"""Blue-green through Azure deployment slots against a fake of the ARM Web Apps API on loopback:
app settings of the app and its slot, the ramp-up rule, and slotsswap's 202 + Location polling."""

from __future__ import annotations

import pytest

from flightdeck.delivery.targets.azure_slots import (
    AzureNotFoundError,
    AzureSlotsError,
    AzureSlotsTarget,
)
from flightdeck.errors import ConfigError
from tests.support.cloud_fakes import FakeArm

pytestmark = pytest.mark.integration

SUB, GROUP, APP = "00000000-0000-0000-0000-000000000000", "flightdeck", "scorer"


@pytest.fixture(scope="module")
def fake():
    server = FakeArm()
    yield server
    server.close()


@pytest.fixture
def arm(fake):
    fake.reset(SUB, GROUP, APP, {
        "production": {"FLIGHTDECK_MODEL_NAME": "credit", "FLIGHTDECK_MODEL_VERSION": "1", "OTHER": "kept"},
        "staging": {"FLIGHTDECK_MODEL_NAME": "credit", "FLIGHTDECK_MODEL_VERSION": "1", "OTHER": "kept"}})
    return fake


def target(fake, version="2", **options) -> AzureSlotsTarget:
    return AzureSlotsTarget(subscription_id=SUB, resource_group=GROUP, app=APP, model_name="credit",
                            model_version=version, token="test-token", api_base=fake.url, poll_seconds=0.01,
                            **options)


def versions(fake) -> tuple[str, str]:
    return fake.settings["production"]["FLIGHTDECK_MODEL_VERSION"], fake.settings["staging"]["FLIGHTDECK_MODEL_VERSION"]


def test_blue_green_deploys_to_the_slot_ramps_and_swaps(arm):
    run = target(arm, package_url="https://packages.example/scorer-2.zip")
    state = run.deploy()
    assert (state.baseline, state.candidate, state.candidate_percent) == ("1", "2", 0)
    assert versions(arm) == ("1", "2")
    assert arm.settings["staging"]["WEBSITE_RUN_FROM_PACKAGE"] == "https://packages.example/scorer-2.zip"
    assert arm.settings["staging"]["OTHER"] == "kept", "the update keeps the slot's other settings"
    put = [r for r in arm.writes() if r[0] == "PUT"]
    assert [(m, p, q) for m, p, q, _ in put] == [
        ("PUT", f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.Web/sites/{APP}/slots/staging"
                "/config/appsettings", {"api-version": "2023-12-01"})]

    assert run.set_weight(10).candidate_percent == 10
    assert arm.ramp == [{"actionHostName": f"{APP}-staging.azurewebsites.net", "reroutePercentage": 10.0,
                         "name": "staging"}]
    writes = len(arm.writes())
    run.set_weight(10)
    assert len(arm.writes()) == writes, "the same share twice is one write"

    later = AzureSlotsTarget.from_dict(run.to_dict(), token="test-token")
    later.poll_seconds = 0.01
    assert later.promote().candidate_percent == 100
    assert versions(arm) == ("2", "1") and arm.ramp == []
    swap = [r for r in arm.requests if r[1].endswith("/slotsswap")]
    assert [(m, b) for m, _, _, b in swap] == [("POST", {"targetSlot": "production", "preserveVnet": True})]
    assert len([r for r in arm.requests if r[1].startswith("/swapoperations/")]) == 2, "polled until done"
    later.promote()
    assert len([r for r in arm.requests if r[1].endswith("/slotsswap")]) == 1, "promoting twice swaps once"

    state = later.rollback()
    assert (state.baseline, state.candidate_percent) == ("1", 0)
    assert versions(arm) == ("1", "2")


def test_a_slot_without_the_candidate_and_no_package_is_refused(arm):
    with pytest.raises(AzureSlotsError, match="zip deploy with --slot staging"):
        target(arm).deploy()
    assert arm.writes() == []


def test_a_canary_rollback_only_clears_the_ramp(arm):
    arm.settings["staging"]["FLIGHTDECK_MODEL_VERSION"] = "2"
    run = target(arm)
    run.deploy()
    run.set_weight(30)
    run.rollback()
    assert arm.ramp == [] and versions(arm) == ("1", "2")
    assert not [r for r in arm.requests if r[1].endswith("/slotsswap")]


def test_rollback_leaves_an_app_another_change_owns(arm):
    arm.settings["staging"]["FLIGHTDECK_MODEL_VERSION"] = "2"
    run = target(arm)
    run.deploy()
    arm.settings["production"]["FLIGHTDECK_MODEL_VERSION"] = "7"
    writes = len(arm.writes())
    run.rollback()
    assert "later change owns it" in run.left_alone
    assert len(arm.writes()) == writes


def test_missing_app_and_bad_input_name_the_fix(arm):
    with pytest.raises(AzureNotFoundError, match="terraform module azure_function"):
        AzureSlotsTarget(subscription_id=SUB, resource_group=GROUP, app="nope", model_name="credit",
                         model_version="2", token="t", api_base=arm.url).state()
    with pytest.raises(ConfigError, match="production"):
        target(arm, slot="production")
    with pytest.raises(ConfigError, match="between 0 and 100"):
        target(arm).set_weight(120)
    with pytest.raises(ConfigError, match="no ARM token"):
        AzureSlotsTarget(subscription_id=SUB, resource_group=GROUP, app=APP, model_name="credit",
                         model_version="2", api_base=arm.url).state()


def test_the_factory_builds_and_pins_the_target_of_a_plan(arm):
    from flightdeck.delivery.plan import ResolvedRollout, RolloutPlan
    from flightdeck.delivery.targets.factory import make_target, pin_target

    arm.settings["staging"]["FLIGHTDECK_MODEL_VERSION"] = "2"
    plan = RolloutPlan(strategy="blue_green", model_name="credit", target="azure_slots",
                       metrics_source="prometheus", prometheus_url="http://127.0.0.1:9",
                       target_options={"subscription_id": SUB, "resource_group": GROUP, "app": APP,
                                       "api_base": arm.url})
    rollout = ResolvedRollout(plan=plan, baseline_version="1", candidate_version="2")
    pinned = pin_target(rollout, make_target(rollout, azure_token="test-token"))
    assert pinned.target_state["baseline_version"] == "1"
    arm.settings["production"]["FLIGHTDECK_MODEL_VERSION"] = "2"  # swapped meanwhile: the pin keeps the baseline
    again = make_target(ResolvedRollout.from_dict(pinned.to_dict()), azure_token="test-token")
    assert again.baseline == "1"
