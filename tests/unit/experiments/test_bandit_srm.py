"""The sample-ratio check under a bandit: units against the weights the bandit had set, day by day."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from flightdeck.experiments.analysis import analyse
from flightdeck.experiments.metrics import aggregate
from flightdeck.experiments.srm import srm_check
from tests.unit.experiments.support import START, definition, rows

# The weights in force on each of three days: the bandit moves traffic towards b.
SET = {START: {"a": 0.5, "b": 0.5}, START + timedelta(days=1): {"a": 0.3, "b": 0.7},
       START + timedelta(days=2): {"a": 0.1, "b": 0.9}}
LAST = START + timedelta(days=2)


def _bandit():
    return definition(policy="bandit", primary_metric="approval_rate", secondary_metrics=[], guardrails=[],
                      bandit={"top_two_beta": 0.8}, minimum_detectable_effect=0.01)


def _days(shares_b: list[float], n: int = 1500) -> pd.DataFrame:
    """`n` new units a day, each day's units in b with probability `shares_b[day]` (seeded)."""
    frames = []
    for k, share in enumerate(shares_b):
        frame = rows(n, days=1, share_b=share, seed=10 + k)
        frames.append(frame.assign(unit_id="d" + str(k) + "-" + frame["unit_id"],
                                   request_id="d" + str(k) + "-" + frame["request_id"],
                                   created_at=frame["created_at"] + timedelta(days=k)))
    return pd.concat(frames, ignore_index=True)


def _run(frame, weight_history):
    d = _bandit()
    return analyse(d, aggregate(frame, list(d.variants), 0.5), LAST, weight_history=weight_history)


@pytest.fixture(scope="module")
def as_set():
    return _days([0.5, 0.7, 0.9])


def test_units_that_follow_the_weights_the_bandit_set_pass(as_set):
    a = _run(as_set, SET)
    # 1500 × (0.5 + 0.3 + 0.1) = 1350 expected in a, against the 1500 × 3 × 0.5 a fixed 50/50 would expect
    assert a.srm is not None and not a.srm.mismatch and a.srm_note == ""
    assert a.srm.expected_share == pytest.approx({"a": 0.3, "b": 0.7})
    assert srm_check(a.units, a.definition.weights).mismatch  # the design's 50/50 would wrongly block it
    assert a.decision.status != "srm_mismatch"
    # every day's look is checked against the weights up to that day
    assert all(p.srm_p_value is not None and p.srm_p_value >= a.definition.srm_threshold for p in a.history)


def test_an_arm_starved_relative_to_its_weight_is_a_mismatch():
    starved = _days([0.5, 0.5, 0.5])  # b kept half of the traffic while the bandit gave it 70% then 90%
    a = _run(starved, SET)
    assert a.srm is not None and a.srm.mismatch
    assert a.srm.observed_share["b"] < a.srm.expected_share["b"]
    assert a.decision.status == "srm_mismatch" and a.decision.action == "keep_running"
    assert "sample-ratio mismatch" in a.decision.reasons[0]


@pytest.mark.parametrize("history", [None, {k: v for k, v in SET.items() if k != START + timedelta(days=1)}],
                         ids=["no history", "one day missing"])
def test_missing_weight_history_is_not_checked_with_the_reason(as_set, history):
    a = _run(as_set, history)
    assert a.srm is None
    assert "not run" in a.srm_note and (START + timedelta(days=1)).isoformat() in a.srm_note
    assert a.srm_note in a.decision.reasons and a.to_dict()["srm_note"] == a.srm_note
