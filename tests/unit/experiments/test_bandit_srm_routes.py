"""The bandit's sample-ratio check against the assignment probabilities the route table had in force:
each unit's first assignment carries its route version, and the weights of that version are what
the unit was drawn with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from flightdeck.experiments.analysis import analyse, weight_history_from_routes
from flightdeck.experiments.metrics import aggregate
from flightdeck.serving.policies import unit_bucket
from tests.unit.experiments.support import START, definition

# Route versions 1, 2, 3 (one per day): the bandit moves traffic towards b.
ROUTES = {1: {"a": 50, "b": 50}, 2: {"a": 30, "b": 70}, 3: {"a": 10, "b": 90}}
SALT = "srm-routes"
LAST = START + timedelta(days=2)


def _bandit():
    return definition(policy="bandit", primary_metric="approval_rate", secondary_metrics=[], guardrails=[],
                      bandit={"top_two_beta": 0.8}, minimum_detectable_effect=0.01)


def _sticky(unit: str, weights: dict) -> str:
    """The variant an `ab` endpoint with `weights` gives `unit` (the gateway's hash)."""
    return "a" if unit_bucket(SALT, unit) < weights["a"] / (weights["a"] + weights["b"]) else "b"


def traffic(n: int = 1500, *, returning: float = 0.0, assigned_by=None, lost_b: float = 0.0,
            seed: int = 3) -> pd.DataFrame:
    """`n` new units a day for three days, day k logged under route version k+1 and assigned by the
    weights `assigned_by[k]` (default: that version's). A share `returning` of earlier units come
    back each day (sticky: they move arm when the weights move); `lost_b` of b's rows on days 2 and
    3 never reach the log (a variant failing before it logs)."""
    rng = np.random.default_rng(seed)
    out, seen = [], []
    for k in range(3):
        version = k + 1
        weights = (assigned_by or ROUTES)[version]
        day = datetime.combine(START + timedelta(days=k), datetime.min.time(), tzinfo=UTC) + timedelta(hours=1)
        units = [f"d{k}-u{i}" for i in range(n)]
        units += [u for u in seen if rng.random() < returning]
        seen += units[:n]
        for i, unit in enumerate(units):
            variant = _sticky(unit, weights)
            if variant == "b" and k > 0 and rng.random() < lost_b:
                continue
            out.append({"request_id": f"r{k}-{i}", "row_index": 0, "unit_id": unit, "variant": variant,
                        "model_version": "1" if variant == "a" else "2", "route_version": version,
                        "score": float(rng.beta(2, 7)), "latency_ms": 5.0,
                        "created_at": day + timedelta(seconds=i), "label": float("nan")})
    return pd.DataFrame(out)


def _analyse(rows: pd.DataFrame, routes=ROUTES):
    d = _bandit()
    data = aggregate(rows, list(d.variants), 0.5)
    history = weight_history_from_routes(data.assignments, routes, list(d.variants))
    return analyse(d, data, LAST, weight_history=history), data, history


def test_units_drawn_with_the_weights_in_force_pass():
    a, _, history = _analyse(traffic())
    assert history == {START: pytest.approx({"a": 0.5, "b": 0.5}),
                       START + timedelta(days=1): pytest.approx({"a": 0.3, "b": 0.7}),
                       LAST: pytest.approx({"a": 0.1, "b": 0.9})}
    assert a.srm is not None and a.srm_note == "" and not a.srm.mismatch
    assert a.srm.expected_share == pytest.approx({"a": 0.3, "b": 0.7})
    assert a.decision.status != "srm_mismatch"


def test_returning_units_that_moved_arm_count_in_the_arm_they_were_first_assigned():
    a, data, _ = _analyse(traffic(returning=0.4))
    assert data.units_in_several_variants > 300  # the weights moved under sticky units
    assert not a.srm.mismatch and sum(a.srm.observed.values()) == 4500


@pytest.mark.parametrize("kind", ["stale split", "lost rows"])
def test_a_split_that_is_not_the_one_in_force_is_a_mismatch(kind):
    rows = (traffic(assigned_by={1: ROUTES[1], 2: ROUTES[1], 3: ROUTES[1]}) if kind == "stale split"
            else traffic(lost_b=0.15))
    a, _, _ = _analyse(rows)
    assert a.srm is not None and a.srm.mismatch
    assert a.srm.observed_share["b"] < a.srm.expected_share["b"]
    assert a.decision.status == "srm_mismatch" and "sample-ratio mismatch" in a.decision.reasons[0]


def test_a_day_with_a_unit_of_an_unknown_or_unweighted_route_version_is_not_checked():
    rows = traffic()
    a, _, history = _analyse(rows, {1: ROUTES[1], 2: None})
    assert set(history) == {START}
    assert a.srm is None and "not run" in a.srm_note and (START + timedelta(days=1)).isoformat() in a.srm_note


def test_a_day_under_two_versions_averages_their_weights_over_its_units():
    assignments = pd.DataFrame({"unit": ["u1", "u2", "u3", "u4"], "variant": ["a", "b", "b", "b"],
                                "day": [START] * 4, "route_version": [1, 1, 1, 3]})
    history = weight_history_from_routes(assignments, {1: {"a": 1, "b": 1}, 3: {"a": 1, "b": 9, "c": 5}},
                                         ["a", "b"])
    # three units at 1/2 and one at 1/10 (c is not an arm of the experiment: shares over a and b)
    assert history[START] == pytest.approx({"a": (3 * 0.5 + 0.1) / 4, "b": (3 * 0.5 + 0.9) / 4})
