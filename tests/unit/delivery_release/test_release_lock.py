"""The per-model release lock on a real MLflow registry (SQLite store) and a real lock table (the
gateway's SQLite database): held by one run at a time across strategies, re-entrant for its
holder, lapsing with the holder's rollout, freed by hand with the command its error names, and
frozen by an operator's hand-set tag. The races are in tests/integration/delivery/."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time

import pytest

from flightdeck.cli import main as flightdeck_main
from flightdeck.delivery.lock import ReleaseLocks
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


def holder() -> str | None:
    held = ReleaseLocks.from_settings().holder(MODEL)
    return None if held is None else held.run_id


def test_a_blue_green_rollout_is_refused_while_a_canary_of_the_model_holds_the_lock(registry):
    acquire_release_lock(rollout("canary"), registry, "canary_run")
    acquire_release_lock(rollout("canary"), registry, "canary_run")  # its own retry is let through
    with pytest.raises(ReleaseLockedError, match="being released by run 'canary_run'.*"
                                                 "lock free locked canary_run") as caught:
        acquire_release_lock(rollout("blue_green"), registry, "blue_green_run")
    assert isinstance(caught.value, FlightdeckError)

    assert release_release_lock(rollout("blue_green"), registry, "blue_green_run") is False  # not its lock
    assert holder() == "canary_run"
    assert release_release_lock(rollout("canary"), registry, "canary_run") is True
    assert holder() is None
    acquire_release_lock(rollout("blue_green"), registry, "blue_green_run")
    assert holder() == "blue_green_run"


def test_a_lock_lapses_when_its_rollout_ran_out_of_time(registry):
    acquire_release_lock(rollout("canary", started_at=time.time() - 601), registry, "dead_run")
    acquire_release_lock(rollout("canary"), registry, "next_run")  # the dead run's lock had lapsed
    assert holder() == "next_run"
    assert release_release_lock(rollout("canary"), registry, "dead_run") is False  # the late holder drops nothing
    with pytest.raises(ReleaseLockedError, match="being released by run 'next_run'"):
        acquire_release_lock(rollout("canary"), registry, "another_run")


def test_the_command_the_error_names_frees_a_stale_lock_and_only_that_runs(registry, flightdeck_home, capsys):
    acquire_release_lock(rollout("canary"), registry, "gone_run")
    with pytest.raises(ReleaseLockedError) as caught:
        acquire_release_lock(rollout("canary"), registry, "new_run")
    command = shlex.split(str(caught.value).split("free the lock: ", 1)[1])
    assert command[:3] == ["flightdeck", "release-lock", "free"]
    env = {**os.environ, "FLIGHTDECK_HOME": str(flightdeck_home)}

    assert flightdeck_main(["release-lock", "show", MODEL]) == 0 and f"{MODEL}: held by run 'gone_run' until" in capsys.readouterr().out
    assert flightdeck_main(["release-lock", "free", MODEL, "new_run"]) == 2  # naming the wrong run frees nothing
    assert "not held by run 'new_run' (holder: gone_run)" in capsys.readouterr().err
    assert holder() == "gone_run"

    freed = subprocess.run([sys.executable, "-m", "flightdeck", *command[1:]], env=env, capture_output=True, text=True)
    assert freed.returncode == 0, freed.stderr
    assert holder() is None
    acquire_release_lock(rollout("canary"), registry, "new_run")


def test_an_operator_freezes_a_model_with_a_hand_set_tag_until_it_is_removed(registry):
    registry.client.set_registered_model_tag(MODEL, RELEASE_LOCK_TAG, "operator freeze")
    with pytest.raises(ReleaseLockedError, match="frozen by hand.*'operator freeze'.*delete_registered_model_tag"):
        acquire_release_lock(rollout("canary"), registry, "a_run")
    assert holder() is None  # a refused run takes nothing

    registry.client.delete_registered_model_tag(MODEL, RELEASE_LOCK_TAG)
    acquire_release_lock(rollout("canary"), registry, "a_run")
    registry.client.set_registered_model_tag(MODEL, RELEASE_LOCK_TAG, "incident 42")  # frozen mid-rollout
    with pytest.raises(ReleaseLockedError, match="frozen by hand"):
        acquire_release_lock(rollout("canary"), registry, "a_run")  # even the holder's retry
    assert release_release_lock(rollout("canary"), registry, "a_run") is True  # the holder can still end
    assert registry.client.get_registered_model(MODEL).tags[RELEASE_LOCK_TAG] == "incident 42"  # freeze stays


def test_a_lock_an_earlier_version_wrote_as_a_tag_is_honoured_until_it_lapses_or_its_run_ends(registry):
    registry.client.set_registered_model_tag(MODEL, RELEASE_LOCK_TAG, json.dumps(
        {"run_id": "old_run", "expires_at": time.time() + 600}))
    with pytest.raises(ReleaseLockedError, match="being released by run 'old_run'.*earlier flightdeck"):
        acquire_release_lock(rollout("canary"), registry, "new_run")
    acquire_release_lock(rollout("canary"), registry, "old_run")  # its retry goes on, now in the table
    assert release_release_lock(rollout("canary"), registry, "old_run") is True
    assert RELEASE_LOCK_TAG not in registry.client.get_registered_model(MODEL).tags
    acquire_release_lock(rollout("canary"), registry, "new_run")

    registry.client.set_registered_model_tag(MODEL, RELEASE_LOCK_TAG, json.dumps(
        {"run_id": "dead_run", "expires_at": time.time() - 1}))
    release_release_lock(rollout("canary"), registry, "new_run")
    acquire_release_lock(rollout("canary"), registry, "third_run")  # a lapsed tag does not hold
    assert holder() == "third_run"
