"""A top-two Thompson-sampling bandit on a binary reward, writing its weights to the gateway.

Each arm's success rate has a Beta posterior (prior Beta(a, b), then + successes and
+ failures). Top-two Thompson sampling (Russo, "Simple Bayesian algorithms for best-arm
identification", Operations Research 2020) assigns the next unit like this: draw one rate
per arm from the posteriors; with probability β give the unit to the arm with the best
draw (the leader), otherwise re-draw until another arm leads and give it to that challenger.
Plain Thompson sampling (β = 1) starves the runner-up once one arm looks best; top-two keeps
measuring it, which is what an experiment that must still pick a winner needs. β sets how much
the leader gets: with TWO arms and β = 1/2 (the default, Russo's recommendation for identifying
the best arm) the split stays 50/50 however sure the posterior is, since leader and challenger
each get half; choose β > 1/2 (e.g. 0.8) to move traffic towards the leader.

The gateway splits traffic by weights, so the bandit turns that rule into assignment
probabilities rather than per-unit draws:

* P(best)_i — the share of `draws` Monte Carlo posterior samples in which arm i leads;
* ψ_j = β P(best)_j + (1 − β) Σ_{i≠j} P(best)_i · P(best)_j / (1 − P(best)_i): the
  re-drawn challenger is independent of the first draw, so given the leader i it is arm j
  with probability P(best)_j / (1 − P(best)_i). When every draw had the same leader i
  (1 − P(best)_i = 0), the challenger distribution is estimated as the leader frequencies
  among the other arms in the same draws;
* weights w_j = floor + (1 − k · floor) ψ_j for k arms: every arm keeps at least `floor` of the
  traffic (so a bad early streak cannot starve an arm, and the experiment keeps measuring it),
  and the weights sum to 1.

No weight moves until every arm has `min_units` trials: early posteriors are mostly prior.
`apply_weights` writes the weights into the endpoint's `weights` (policy ab or canary) through
the gateway's admin API, with a comment naming the bandit and its assignment probabilities,
so the route history records every move. With policy `ab` the split is sticky by unit; a
weight change re-buckets the units near the boundary of the hash ranges.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from flightdeck.errors import ConfigError
from flightdeck.experiments.inference import InsufficientDataError

if TYPE_CHECKING:
    from flightdeck.serving.client import GatewayClient

log = logging.getLogger(__name__)

BANDIT_NAME = "thompson-bandit"
_CHANGE_TOLERANCE = 1e-6  # weights closer than this to the table's are "unchanged"


@dataclass(frozen=True)
class BanditDecision:
    """Traffic weights for the next period and the posterior behind them."""

    weights: dict[str, float]
    probability_best: dict[str, float]
    moved: bool
    reason: str
    assignment_probability: dict[str, float] | None = None  # ψ before the floor (None when not moved)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line for logs and the route history."""
        weights = " ".join(f"{k}={v:.4f}" for k, v in self.weights.items())
        best = " ".join(f"{k}={v:.4f}" for k, v in self.probability_best.items())
        return f"{BANDIT_NAME}: weights {weights}; P(best) {best}; {self.reason}"


class ThompsonBandit:
    """Top-two Thompson sampling over `arms` with a traffic floor and a warm-up per arm."""

    def __init__(self, arms: Sequence[str], *, floor: float = 0.05, min_units: int = 100,
                 top_two_beta: float = 0.5, prior: tuple[float, float] = (1.0, 1.0), draws: int = 10_000,
                 seed: int | None = None) -> None:
        arms = list(arms)
        if len(arms) < 2 or len(set(arms)) != len(arms):
            raise ConfigError("arms", f"need at least two distinct arms, got {arms}", "name every variant once")
        if not (0 <= floor and floor * len(arms) <= 1):
            raise ConfigError("floor", f"{floor!r} × {len(arms)} arms must lie in [0, 1]",
                              f"use a floor of at most {1 / len(arms):.3f}")
        if not (isinstance(min_units, int) and min_units >= 0):
            raise ConfigError("min_units", f"must be a non-negative integer, got {min_units!r}", "use e.g. 100")
        if not 0 <= top_two_beta <= 1:
            raise ConfigError("top_two_beta", f"must lie in [0, 1], got {top_two_beta!r}", "use 0.5")
        if len(prior) != 2 or not all(math.isfinite(p) and p > 0 for p in prior):
            raise ConfigError("prior", f"must be two positive Beta parameters, got {prior!r}", "use (1, 1)")
        if not (isinstance(draws, int) and draws >= 100):
            raise ConfigError("draws", f"must be an integer of at least 100, got {draws!r}", "use 10000")
        self.arms = arms
        self.floor = float(floor)
        self.min_units = min_units
        self.top_two_beta = float(top_two_beta)
        self.prior = (float(prior[0]), float(prior[1]))
        self.draws = draws
        self._rng = np.random.default_rng(seed)

    def _counts(self, successes: Mapping[str, int], trials: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
        missing = [a for a in self.arms if a not in trials]
        if missing:
            raise InsufficientDataError("bandit reward", ", ".join(missing), "no trials recorded")
        unknown = sorted((set(successes) | set(trials)) - set(self.arms))
        if unknown:
            raise ConfigError("trials", f"arms {unknown} are not bandit arms {self.arms}",
                              "pass counts for the bandit's arms only")
        s = np.array([successes.get(a, 0) for a in self.arms], dtype=float)
        n = np.array([trials[a] for a in self.arms], dtype=float)
        for arm, si, ni in zip(self.arms, s, n, strict=True):
            if not (0 <= si <= ni) or si != int(si) or ni != int(ni):
                raise ConfigError(f"successes.{arm}", f"{si:g} successes out of {ni:g} trials",
                                  "pass integer counts with successes <= trials")
        return s, n

    def probability_best(self, successes: Mapping[str, int], trials: Mapping[str, int]
                         ) -> tuple[np.ndarray, np.ndarray]:
        """(P(best) per arm, challenger matrix C[i, j] = P(challenger j | leader i)), Monte Carlo."""
        s, n = self._counts(successes, trials)
        a, b = self.prior
        samples = self._rng.beta(a + s, b + n - s, size=(self.draws, len(self.arms)))
        leader = samples.argmax(axis=1)
        k = len(self.arms)
        p_best = np.bincount(leader, minlength=k) / self.draws
        challenger = np.zeros((k, k))
        for i in range(k):
            if p_best[i] < 1.0:
                challenger[i] = p_best / (1.0 - p_best[i])
                challenger[i, i] = 0.0
            else:  # every draw led with i: estimate who leads among the others in the same draws
                others = np.delete(np.arange(k), i)
                runner = others[samples[:, others].argmax(axis=1)]
                challenger[i] = np.bincount(runner, minlength=k) / self.draws
        return p_best, challenger

    def decide(self, successes: Mapping[str, int], trials: Mapping[str, int],
               current_weights: Mapping[str, float]) -> BanditDecision:
        """Weights for the next period from each arm's cumulative successes and trials."""
        p_best, challenger = self.probability_best(successes, trials)
        best = {a: float(p) for a, p in zip(self.arms, p_best, strict=True)}
        short = [a for a in self.arms if trials[a] < self.min_units]
        if short:
            weights = self._current(current_weights)
            reason = (f"weights held: {', '.join(short)} below min_units={self.min_units} trials "
                      f"({', '.join(str(int(trials[a])) for a in short)})")
            decision = BanditDecision(weights, best, False, reason)
        else:
            beta = self.top_two_beta
            psi = beta * p_best + (1 - beta) * p_best @ challenger
            psi = psi / psi.sum()
            k = len(self.arms)
            w = self.floor + (1 - k * self.floor) * psi
            w = w / w.sum()  # exact already; removes rounding drift
            decision = BanditDecision({a: float(x) for a, x in zip(self.arms, w, strict=True)}, best, True,
                                      f"top-two Thompson sampling (beta={beta:g}, floor={self.floor:g}, "
                                      f"{self.draws} draws)",
                                      {a: float(x) for a, x in zip(self.arms, psi, strict=True)})
        log.info("%s", decision.summary())
        return decision

    def _current(self, current_weights: Mapping[str, float]) -> dict[str, float]:
        """The current split over the bandit's arms, normalised (equal when none is known)."""
        values = np.array([float(current_weights.get(a, 0.0)) for a in self.arms])
        if not np.isfinite(values).all() or (values < 0).any():
            raise ConfigError("current_weights", f"must be non-negative numbers, got {dict(current_weights)}",
                              "pass the endpoint's weights from the route table")
        if values.sum() <= 0:
            values = np.ones(len(self.arms))
        return {a: float(x) for a, x in zip(self.arms, values / values.sum(), strict=True)}


def apply_weights(client: GatewayClient, endpoint: str, decision: BanditDecision, *,
                  author_comment: str) -> int | None:
    """Write `decision.weights` into `endpoint`'s route weights; the new route version, or None.

    Nothing is written when the decision did not move or the table already has these weights
    (compared as shares). The write goes through `GatewayClient.update_endpoint`: it names the
    bandit, its weights and P(best) in the route history's comment, and a concurrent route
    change (409) makes it re-read the table and set the weights on the new one, so neither
    edit is lost. An endpoint the table does not have raises EndpointNotFoundError.
    """
    if not decision.moved:
        log.info("%s: not written (%s)", BANDIT_NAME, decision.reason)
        return None
    comment = f"{decision.summary()} — {author_comment}"[:2000]
    update = client.update_endpoint(endpoint, lambda spec: _with_weights(endpoint, spec, decision.weights),
                                    comment=comment)
    if not update.written:
        log.info("%s: weights unchanged at route version %s", BANDIT_NAME, update.version)
        return None
    log.info("%s: wrote route version %s for endpoint %s", BANDIT_NAME, update.version, endpoint)
    return update.version


def _with_weights(endpoint: str, document: dict, weights: Mapping[str, float]) -> dict | None:
    """`document` (an endpoint's spec) with `weights`, or None when it already splits traffic so."""
    from flightdeck.serving.routes import EndpointSpec

    spec = EndpointSpec.model_validate(document)
    if spec.policy not in ("ab", "canary"):
        raise ConfigError(f"endpoints.{endpoint}.policy", f"is {spec.policy!r}; a bandit needs weights",
                          "serve the experiment with policy 'ab' (sticky) or 'canary'")
    unknown = sorted(set(weights) - set(spec.variants))
    if unknown:
        raise ConfigError("decision.weights", f"arms {unknown} are not variants of endpoint {endpoint!r} "
                          f"({sorted(spec.variants)})", "name the bandit's arms after the endpoint's variants")
    old = spec.weights or {}
    old_total = sum(old.values()) or 1.0
    if set(old) == set(weights) and all(abs(old[a] / old_total - w) <= _CHANGE_TOLERANCE for a, w in weights.items()):
        return None
    return {**document, "weights": {a: round(w, 6) for a, w in weights.items()}}
