"""Top-two Thompson sampling: floor, warm-up, weights summing to 1, the better arm favoured,
determinism with a seed, and how `apply_weights` edits the route table (the real gateway is
in tests/integration/experiments/test_bandit_gateway.py)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flightdeck.errors import ConfigError, FlightdeckError
from flightdeck.experiments.bandit import BANDIT_NAME, BanditDecision, ThompsonBandit, apply_weights
from flightdeck.experiments.inference import InsufficientDataError
from flightdeck.serving.client import EndpointNotFoundError, GatewayClient

ARMS = ["stable", "candidate", "third"]


def test_favours_the_better_arm_and_keeps_the_floor():
    bandit = ThompsonBandit(ARMS, floor=0.05, min_units=100, top_two_beta=0.75, seed=1)
    decision = bandit.decide({"stable": 100, "candidate": 150, "third": 60},
                             {"stable": 1000, "candidate": 1000, "third": 1000}, {})
    assert decision.moved
    w = decision.weights
    assert w["candidate"] > w["stable"] > w["third"]
    assert w["third"] == pytest.approx(0.05, abs=1e-6)  # hopeless arm sits at the floor
    assert sum(w.values()) == pytest.approx(1.0, abs=1e-12)
    assert decision.probability_best["candidate"] > 0.99
    # Top-two: the leader gets about beta of the non-floor traffic, the runner-up the rest.
    assert decision.assignment_probability["candidate"] == pytest.approx(0.75, abs=0.01)
    assert decision.assignment_probability["stable"] == pytest.approx(0.25, abs=0.01)


def test_two_arms_with_beta_one_half_stay_even():
    """Top-two sampling's best-arm-identification split: with two arms and beta = 1/2 the leader
    and the challenger get half each however sure the posterior is (beta > 1/2 favours the leader)."""
    counts = ({"stable": 100, "candidate": 150}, {"stable": 1000, "candidate": 1000})
    even = ThompsonBandit(ARMS[:2], top_two_beta=0.5, seed=1).decide(*counts, {})
    assert even.weights == pytest.approx({"stable": 0.5, "candidate": 0.5})
    leaning = ThompsonBandit(ARMS[:2], top_two_beta=0.8, floor=0.05, seed=1).decide(*counts, {})
    assert leaning.weights["candidate"] == pytest.approx(0.05 + 0.9 * 0.8, abs=0.01)


def test_plain_thompson_when_beta_is_one():
    bandit = ThompsonBandit(ARMS[:2], floor=0.1, top_two_beta=1.0, seed=2)
    decision = bandit.decide({"stable": 100, "candidate": 130}, {"stable": 1000, "candidate": 1000}, {})
    assert decision.assignment_probability == decision.probability_best
    assert decision.weights["candidate"] == pytest.approx(0.1 + 0.8 * decision.probability_best["candidate"])


def test_weights_hold_until_every_arm_has_min_units():
    bandit = ThompsonBandit(ARMS, min_units=200, seed=3)
    current = {"stable": 80, "candidate": 10, "third": 10}
    decision = bandit.decide({"stable": 10, "candidate": 30, "third": 5},
                             {"stable": 800, "candidate": 199, "third": 250}, current)
    assert not decision.moved
    assert decision.weights == pytest.approx({"stable": 0.8, "candidate": 0.1, "third": 0.1})
    assert "candidate" in decision.reason and "199" in decision.reason
    assert decision.assignment_probability is None
    assert set(decision.probability_best) == set(ARMS)  # still reported


def test_deterministic_with_a_seed():
    counts = ({"stable": 50, "candidate": 56, "third": 49}, {"stable": 500, "candidate": 500, "third": 500})
    first = ThompsonBandit(ARMS, seed=42).decide(*counts, {})
    again = ThompsonBandit(ARMS, seed=42).decide(*counts, {})
    other = ThompsonBandit(ARMS, seed=43).decide(*counts, {})
    assert first == again
    assert first.weights != other.weights


@settings(max_examples=40, deadline=None)
@given(rates=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=4),
       trials=st.integers(0, 3000), floor=st.floats(0.0, 0.25), beta=st.floats(0.0, 1.0))
def test_weights_always_sum_to_one_and_respect_the_floor(rates, trials, floor, beta):
    arms = [f"arm{i}" for i in range(len(rates))]
    bandit = ThompsonBandit(arms, floor=floor, min_units=50, top_two_beta=beta, draws=500, seed=0)
    decision = bandit.decide({a: int(r * trials) for a, r in zip(arms, rates, strict=True)},
                             {a: trials for a in arms}, {a: 1.0 for a in arms})
    assert sum(decision.weights.values()) == pytest.approx(1.0, abs=1e-9)
    assert sum(decision.probability_best.values()) == pytest.approx(1.0, abs=1e-9)
    assert decision.moved == (trials >= 50)
    if decision.moved:
        assert min(decision.weights.values()) >= floor - 1e-12


def test_converges_on_the_best_arm_in_a_simulation():
    rng = np.random.default_rng(9)
    truth = {"stable": 0.10, "candidate": 0.13}
    bandit = ThompsonBandit(list(truth), floor=0.05, min_units=200, top_two_beta=0.8, seed=9)
    weights = {"stable": 0.5, "candidate": 0.5}
    s = dict.fromkeys(truth, 0)
    n = dict.fromkeys(truth, 0)
    for _ in range(15):  # 15 periods of 2,000 units
        for arm, share in weights.items():
            units = int(2000 * share)
            n[arm] += units
            s[arm] += int(rng.binomial(units, truth[arm]))
        weights = bandit.decide(s, n, weights).weights
    assert weights["candidate"] > weights["stable"]
    assert n["candidate"] > n["stable"]


def test_insufficient_and_bad_input():
    bandit = ThompsonBandit(ARMS, seed=0)
    with pytest.raises(InsufficientDataError) as caught:
        bandit.decide({"stable": 1}, {"stable": 10, "candidate": 10}, {})
    assert caught.value.arm == "third"
    with pytest.raises(ConfigError, match="successes.stable"):
        bandit.decide({"stable": 11}, dict.fromkeys(ARMS, 10), {})
    with pytest.raises(ConfigError, match="trials"):
        bandit.decide({}, {**dict.fromkeys(ARMS, 10), "ghost": 3}, {})
    with pytest.raises(ConfigError, match="floor"):
        ThompsonBandit(ARMS, floor=0.4)
    with pytest.raises(ConfigError, match="arms"):
        ThompsonBandit(["only"])


# ------------------------------------------------------------------------------ apply_weights
AB = {"endpoints": {"credit": {"policy": "ab", "salt": "exp1", "weights": {"stable": 50, "candidate": 50},
                               "variants": {"stable": {"alias": "champion"}, "candidate": {"version": "2"}}},
                    "other": {"policy": "single", "variants": {"champion": {"alias": "champion"}}}}}


class RecordingClient(GatewayClient):
    """A GatewayClient whose two route-table calls use an in-memory table, so the real
    `update_endpoint` runs on it (over HTTP: tests/integration/experiments/test_bandit_gateway.py)."""

    def __init__(self, document: dict) -> None:
        self.version, self.document, self.writes = 4, copy.deepcopy(document), []

    def routes(self) -> dict:
        return {"version": self.version, "document": copy.deepcopy(self.document), "author": "ops", "comment": None}

    def replace_routes(self, document: dict, comment: str | None = None, expected_version: int | None = None) -> int:
        assert expected_version == self.version
        self.writes.append((document, comment))
        self.version += 1
        self.document = document
        return self.version


def decision(weights: dict, moved: bool = True) -> BanditDecision:
    return BanditDecision(weights, {a: 1 / len(weights) for a in weights}, moved, "test")


def test_apply_weights_writes_only_the_endpoints_weights():
    client = RecordingClient(AB)
    version = apply_weights(client, "credit", decision({"stable": 0.3, "candidate": 0.7}), author_comment="run 7")
    assert version == 5
    document, comment = client.writes[0]
    assert document["endpoints"]["credit"]["weights"] == {"stable": 0.3, "candidate": 0.7}
    assert document["endpoints"]["credit"]["salt"] == "exp1" and document["endpoints"]["other"] == AB["endpoints"]["other"]
    assert comment.startswith(BANDIT_NAME) and "P(best)" in comment and comment.endswith("run 7")
    # Same shares again (and the original 50/50 as shares): nothing is written.
    assert apply_weights(client, "credit", decision({"stable": 0.3, "candidate": 0.7}), author_comment="x") is None
    assert apply_weights(RecordingClient(AB), "credit", decision({"stable": 0.5, "candidate": 0.5}),
                         author_comment="x") is None
    assert apply_weights(client, "credit", decision({"stable": 0.1, "candidate": 0.9}, moved=False),
                         author_comment="x") is None
    assert len(client.writes) == 1


@pytest.mark.parametrize("endpoint, weights, name", [
    ("other", {"champion": 1.0}, "endpoints.other.policy"),
    ("credit", {"stable": 0.5, "ghost": 0.5}, "decision.weights"),
])
def test_apply_weights_refuses_what_it_cannot_write(endpoint, weights, name):
    client = RecordingClient(AB)
    with pytest.raises(ConfigError) as caught:
        apply_weights(client, endpoint, decision(weights), author_comment="x")
    assert caught.value.name == name and not client.writes


def test_apply_weights_on_a_missing_endpoint_names_it_and_the_known_ones():
    client = RecordingClient(AB)
    with pytest.raises(EndpointNotFoundError) as caught:
        apply_weights(client, "credit-typo", decision({"stable": 0.5, "candidate": 0.5}), author_comment="x")
    assert caught.value.endpoint == "credit-typo" and caught.value.known == ["credit", "other"]
    assert isinstance(caught.value, FlightdeckError) and not client.writes
