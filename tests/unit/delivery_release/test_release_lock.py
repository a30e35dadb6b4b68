"""The per-model release lock on a real MLflow registry (file store): held by one run at a time
across strategies, re-entrant for its holder, lapsing with the holder's rollout."""

from __future__ import annotations

import time

import pytest

from flightdeck.delivery.plan import ResolvedRollout, RolloutPlan
from flightdeck.delivery.release import (
    RELEASE_LOCK_TAG,
    ReleaseLockedError,
    acquire_release_lock,
    release_release_lock,
)
from flightdeck.errors import FlightdeckError
from flightdeck.registry import Registry

MODEL = "locked"


@pytest.fixture
def registry(flightdeck_home) -> Registry:
    registry = Registry.from_settings()
    registry.client.create_registered_model(MODEL)
    return registry


def rollout(strategy: str, started_at: float | None = None) -> ResolvedRollout:
    plan = RolloutPlan.parse({"strategy": strategy, "model_name": MODEL, "max_duration_seconds": 600})
    return ResolvedRollout(plan, baseline_version="1", candidate_version="2",
                           started_at=time.time() if started_at is None else started_at)


def test_a_blue_green_rollout_is_refused_while_a_canary_of_the_model_holds_the_lock(registry):
    acquire_release_lock(rollout("canary"), registry, "canary_run")
    acquire_release_lock(rollout("canary"), registry, "canary_run")  # its own retry is let through
    with pytest.raises(ReleaseLockedError, match="being released by run 'canary_run'.*delete_registered_model_tag"
                       ) as caught:
        acquire_release_lock(rollout("blue_green"), registry, "blue_green_run")
    assert isinstance(caught.value, FlightdeckError)

    assert release_release_lock(rollout("blue_green"), registry, "blue_green_run") is False  # not its lock
    assert release_release_lock(rollout("canary"), registry, "canary_run") is True
    acquire_release_lock(rollout("blue_green"), registry, "blue_green_run")
    assert "blue_green_run" in registry.client.get_registered_model(MODEL).tags[RELEASE_LOCK_TAG]


def test_a_lock_lapses_when_its_rollout_ran_out_of_time_but_a_hand_set_one_holds(registry):
    acquire_release_lock(rollout("canary", started_at=time.time() - 601), registry, "dead_run")
    acquire_release_lock(rollout("canary"), registry, "next_run")  # the dead run's lock had lapsed
    registry.client.set_registered_model_tag(MODEL, RELEASE_LOCK_TAG, "operator freeze")
    with pytest.raises(ReleaseLockedError, match="run 'operator freeze'"):
        acquire_release_lock(rollout("canary"), registry, "another_run")
