"""Validation of the experiment statistics (flightdeck.experiments) by simulation.

    python benchmarks/experiments.py [--experiments 2000] [--days 28] [--units-per-day 500]
                                     [--power-sims 4000] [--alpha 0.05] [--seed 7]

Prints each figure next to its target with PASS/MISS and exits non-zero on a MISS:

* A/A, proportions (rate 10 %) and means (lognormal per-unit values): `--experiments`
  experiments with no true difference, analysed after every simulated day for `--days`
  days. The mSPRT (sequential.msprt_arrays, the function behind msprt_proportions /
  msprt_means) must keep its false-positive rate ≤ alpha; the baseline is the naive
  fixed-horizon test (two-proportion z / Welch t) checked every day, whose false-positive
  rate is printed next to it (its inflation is the point), plus the same test read once
  at the end (≈ alpha, as designed). The first experiments' looks are replayed through
  the scalar library functions, which must agree with the vectorised ones.
* Power: experiments with the design's effect at the design's sample size (and at half of
  it) run through the library's own tests (two_proportion_z, welch_t_from_moments); the
  share that rejects must lie within ±3 points of design.power_proportions / power_means
  (statsmodels).
* Sequential design: the mSPRT looked at daily up to design.sample_size_means(sequential=True)
  units per arm must reach the target power (it is a conservative bound, so ≥ power − 3
  points allows for Monte Carlo error); prints the median stopping day and the units used.
* SRM: a 52/48 split of 20,000 units is flagged and 50/50 is not; over random 50/50 and
  52/48 assignments the flag rates are ≤ 0.5 % and ≥ 98 % (the test's power there is 99.1 %).

Everything is numpy-vectorised over experiments; the run time is printed at the end.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass

import numpy as np
from scipy import stats

from flightdeck.devtools.results import write_json
from flightdeck.experiments import design
from flightdeck.experiments.inference import two_proportion_z, welch_t_from_moments
from flightdeck.experiments.sequential import (
    default_tau,
    msprt_arrays,
    msprt_means,
    msprt_proportions,
)
from flightdeck.experiments.srm import srm_check
from flightdeck.stats import proportion_variance

BASE_RATE = 0.10
LOGNORMAL_SIGMA = 1.0
POWER_TOLERANCE = 0.03
REPLAY_EXPERIMENTS = 20


@dataclass
class Target:
    name: str
    value: float
    bound: float
    op: str  # "<=" or ">=" or "within"
    tolerance: float = 0.0

    @property
    def passed(self) -> bool:
        return verdict(self.value, self.op, self.bound, self.tolerance)

    def to_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "bound": self.bound, "op": self.op,
                "tolerance": self.tolerance, "pass": self.passed}


def verdict(value: float, op: str, bound: float, tolerance: float = 0.0) -> bool:
    """Does `value` meet the target `op bound` (within: |value − bound| ≤ tolerance)?"""
    if op == "<=":
        return value <= bound
    if op == ">=":
        return value >= bound
    if op == "within":
        return abs(value - bound) <= tolerance
    raise ValueError(f"unknown target operator {op!r}")


def _target_text(t: Target) -> str:
    if t.op == "within":
        return f"{100 * t.bound:.1f} % ± {100 * t.tolerance:.0f} pts"
    return f"{t.op} {100 * t.bound:.1f} %"


# ------------------------------------------------------------------------------ simulations
def aa_proportions(rng, experiments: int, days: int, per_day: int, alpha: float) -> dict:
    """A/A on a 10 % rate: cumulative counts per look → mSPRT and naive z p-values per look."""
    successes = rng.binomial(per_day, BASE_RATE, size=(experiments, days, 2)).cumsum(axis=1)
    n = per_day * np.arange(1, days + 1)[None, :]
    s_c, s_t = successes[..., 0], successes[..., 1]
    p_c, p_t = s_c / n, s_t / n
    pooled = (s_c + s_t) / (2 * n)
    variance = proportion_variance(s_c, n) / n + proportion_variance(s_t, n) / n
    p_seq, _ = msprt_arrays(p_t - p_c, variance, default_tau(np.sqrt(pooled * (1 - pooled))), alpha)
    p_seq = np.minimum.accumulate(p_seq, axis=1)
    z = (p_t - p_c) / np.sqrt(pooled * (1 - pooled) * 2 / n)
    p_naive = 2 * stats.norm.sf(np.abs(z))
    replay = 0.0
    for e in range(min(REPLAY_EXPERIMENTS, experiments)):
        previous = 1.0
        for d in range(days):
            seq = msprt_proportions(int(s_c[e, d]), int(n[0, d]), int(s_t[e, d]), int(n[0, d]), alpha=alpha,
                                    previous_p_value=previous)
            previous = seq.p_value
            fixed = two_proportion_z(int(s_c[e, d]), int(n[0, d]), int(s_t[e, d]), int(n[0, d]), alpha=alpha)
            replay = max(replay, abs(seq.p_value - p_seq[e, d]), abs(fixed.p_value - p_naive[e, d]))
    return _aa_summary(p_seq, p_naive, alpha, replay)


def aa_means(rng, experiments: int, days: int, per_day: int, alpha: float) -> dict:
    """A/A on lognormal per-unit values, drawn unit by unit, one day at a time."""
    total = np.zeros((experiments, 2))
    total_sq = np.zeros((experiments, 2))
    p_seq = np.empty((experiments, days))
    p_naive = np.empty((experiments, days))
    moments = []
    for d in range(days):
        x = rng.lognormal(0.0, LOGNORMAL_SIGMA, size=(experiments, 2, per_day))
        total += x.sum(axis=2)
        total_sq += (x * x).sum(axis=2)
        n = per_day * (d + 1)
        mean = total / n
        var = (total_sq - n * mean * mean) / (n - 1)
        moments.append((mean[:REPLAY_EXPERIMENTS].copy(), var[:REPLAY_EXPERIMENTS].copy(), n))
        pooled_sd = np.sqrt((var[:, 0] + var[:, 1]) / 2)
        p_seq[:, d], _ = msprt_arrays(mean[:, 1] - mean[:, 0], (var[:, 0] + var[:, 1]) / n,
                                      default_tau(pooled_sd), alpha)
        p_naive[:, d] = stats.ttest_ind_from_stats(mean[:, 1], np.sqrt(var[:, 1]), n, mean[:, 0],
                                                   np.sqrt(var[:, 0]), n, equal_var=False).pvalue
    p_seq = np.minimum.accumulate(p_seq, axis=1)
    replay = 0.0
    for e in range(min(REPLAY_EXPERIMENTS, experiments)):
        previous = 1.0
        for d, (mean, var, n) in enumerate(moments):
            args = (mean[e, 0], var[e, 0], n, mean[e, 1], var[e, 1], n)
            previous = msprt_means(*args, alpha=alpha, previous_p_value=previous).p_value
            fixed = welch_t_from_moments(*args, alpha=alpha).p_value
            replay = max(replay, abs(previous - p_seq[e, d]), abs(fixed - p_naive[e, d]))
    return _aa_summary(p_seq, p_naive, alpha, replay)


def _aa_summary(p_seq: np.ndarray, p_naive: np.ndarray, alpha: float, replay: float) -> dict:
    return {"sequential_fpr": float((p_seq[:, -1] < alpha).mean()),  # running minimum: ever below
            "naive_daily_fpr": float((p_naive < alpha).any(axis=1).mean()),
            "fixed_horizon_fpr": float((p_naive[:, -1] < alpha).mean()),
            "replay_max_abs_diff": replay}


def power_proportions_sim(rng, sims: int, n: int, mde: float, alpha: float) -> float:
    s_c = rng.binomial(n, BASE_RATE, sims)
    s_t = rng.binomial(n, BASE_RATE + mde, sims)
    return float(np.mean([two_proportion_z(int(a), n, int(b), n, alpha=alpha).p_value < alpha
                          for a, b in zip(s_c, s_t, strict=True)]))


def power_means_sim(rng, sims: int, n: int, sd: float, mde: float, alpha: float) -> float:
    """Normal data, drawn exactly through its sufficient statistics (mean ~ N, variance ~ χ²)."""
    means = rng.normal([0.0, mde], sd / math.sqrt(n), size=(sims, 2))
    variances = sd * sd * rng.chisquare(n - 1, size=(sims, 2)) / (n - 1)
    return float(np.mean([welch_t_from_moments(m[0], v[0], n, m[1], v[1], n, alpha=alpha).p_value < alpha
                          for m, v in zip(means, variances, strict=True)]))


def sequential_design_sim(rng, experiments: int, days: int, n_total: int, sd: float, mde: float,
                          alpha: float) -> dict:
    """mSPRT looked at daily until `n_total` units per arm; normal data via daily moments."""
    per_day = np.diff(np.round(np.linspace(0, n_total, days + 1)).astype(int))
    n = per_day.cumsum()
    noise = rng.standard_normal(size=(experiments, days, 2)) * (sd / np.sqrt(per_day))[None, :, None]
    day_mean = np.array([0.0, mde]) + noise
    day_ss = sd * sd * rng.chisquare((per_day - 1)[None, :, None], size=(experiments, days, 2))
    sums = (day_mean * per_day[None, :, None]).cumsum(axis=1)
    # Σx² per day = SS + n · mean²; cumulative, then the sample variance of all units so far.
    sq = (day_ss + per_day[None, :, None] * day_mean ** 2).cumsum(axis=1)
    mean = sums / n[None, :, None]
    var = (sq - n[None, :, None] * mean ** 2) / (n[None, :, None] - 1)
    pooled_sd = np.sqrt((var[..., 0] + var[..., 1]) / 2)
    p, _ = msprt_arrays(mean[..., 1] - mean[..., 0], (var[..., 0] + var[..., 1]) / n[None, :],
                        default_tau(pooled_sd), alpha)
    stopped = p < alpha
    right_sign = mean[..., 1] > mean[..., 0]
    first = np.where(stopped.any(axis=1), stopped.argmax(axis=1), days)
    rejected = stopped.any(axis=1) & right_sign[np.arange(experiments), np.minimum(first, days - 1)]
    used = np.where(first < days, n[np.minimum(first, days - 1)], n[-1])
    return {"power": float(rejected.mean()),
            "median_stop_day": float(np.median(first + 1)),
            "mean_units_per_arm": float(used.mean())}


def srm_sim(rng, experiments: int, units: int, share: float) -> float:
    """Share of random assignments (each unit to control with probability `share`) flagged."""
    control = rng.binomial(units, share, experiments)
    return float(np.mean([srm_check({"control": int(c), "treatment": units - int(c)},
                                    {"control": 0.5, "treatment": 0.5}).mismatch for c in control]))


# ------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--experiments", type=int, default=2000, help="simulated experiments per A/A scenario")
    p.add_argument("--days", type=int, default=28, help="daily looks per experiment")
    p.add_argument("--units-per-day", type=int, default=500, help="new units per arm per day (A/A)")
    p.add_argument("--power-sims", type=int, default=4000, help="simulated experiments per power figure")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", metavar="PATH", help="also write the result, the command and the date as JSON")
    args = p.parse_args(argv)
    if min(args.experiments, args.days, args.power_sims) < 1 or args.units_per_day < 2:
        p.error("--experiments, --days, --power-sims must be positive and --units-per-day >= 2")
    if not 0 < args.alpha < 0.5:
        p.error("--alpha must lie in (0, 0.5)")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    alpha = args.alpha
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(args.seed).spawn(8)]
    targets: list[Target] = []
    print(f"Experiment statistics validation: seed {args.seed}, alpha {alpha:g}\n")

    # ---- A/A: sequential vs the naive daily test
    print(f"A/A: {args.experiments:,} experiments × {args.days} daily looks, {args.units_per_day} new units "
          f"per arm per day ({args.days * args.units_per_day:,} per arm at the end)")
    aa = {"proportions": aa_proportions(rngs[0], args.experiments, args.days, args.units_per_day, alpha),
          "means": aa_means(rngs[1], args.experiments, args.days, args.units_per_day, alpha)}
    print(f"  {'metric':<34} {'mSPRT, daily':>13} {'naive test, daily':>18} {'naive test, once at end':>24}")
    labels = {"proportions": f"proportions (rate {100 * BASE_RATE:g} %)",
              "means": f"means (lognormal, sigma {LOGNORMAL_SIGMA:g})"}
    for key, r in aa.items():
        print(f"  {labels[key]:<34} {100 * r['sequential_fpr']:>11.2f} % {100 * r['naive_daily_fpr']:>16.2f} % "
              f"{100 * r['fixed_horizon_fpr']:>22.2f} %")
    print(f"  inflation of the naive daily test: {aa['proportions']['naive_daily_fpr'] / alpha:.1f}× alpha "
          f"(proportions), {aa['means']['naive_daily_fpr'] / alpha:.1f}× alpha (means)")
    replay = max(r["replay_max_abs_diff"] for r in aa.values())
    print(f"  replayed the first {REPLAY_EXPERIMENTS} experiments' looks through msprt_proportions / msprt_means / "
          f"two_proportion_z / welch_t_from_moments: max |Δp| {replay:.2e}\n")
    for key, r in aa.items():
        targets.append(Target(f"A/A sequential false-positive rate, {key}", r["sequential_fpr"], alpha, "<="))
    targets.append(Target("replay agrees with the vectorised simulation (max |Δp| ≤ 1e-9)",
                          replay, 1e-9, "<="))

    # ---- power: simulation vs statsmodels
    n_prop = design.sample_size_proportions(BASE_RATE, 0.01, alpha=alpha, power=0.8)
    n_mean = design.sample_size_means(1.0, 0.1, alpha=alpha, power=0.8)
    print(f"Power: {args.power_sims:,} simulated experiments per row through the library's tests")
    print(f"  {'design':<52} {'n per arm':>10} {'analytic':>9} {'simulated':>10}")
    power_rows = []
    for n in (n_prop, n_prop // 2):
        analytic = design.power_proportions(BASE_RATE, 0.01, n, alpha=alpha)
        simulated = power_proportions_sim(rngs[2], args.power_sims, n, 0.01, alpha)
        power_rows.append(("proportions 10 % → 11 % (two_proportion_z)", n, analytic, simulated))
    for n in (n_mean, n_mean // 2):
        analytic = design.power_means(1.0, 0.1, n, alpha=alpha)
        simulated = power_means_sim(rngs[3], args.power_sims, n, 1.0, 0.1, alpha)
        power_rows.append(("means, difference 0.1 sd (welch_t)", n, analytic, simulated))
    for label, n, analytic, simulated in power_rows:
        print(f"  {label:<52} {n:>10,} {100 * analytic:>8.1f} % {100 * simulated:>8.1f} %")
        targets.append(Target(f"power {label}, n={n:,}: simulated vs analytic", simulated, analytic, "within",
                              POWER_TOLERANCE))

    # ---- sequential design
    n_seq = design.sample_size_means(1.0, 0.1, alpha=alpha, power=0.8, sequential=True)
    seq = sequential_design_sim(rngs[4], args.experiments, args.days, n_seq, 1.0, 0.1, alpha)
    print(f"\nSequential design: sample_size_means(sd=1, mde=0.1, sequential=True) = {n_seq:,} per arm "
          f"({n_seq / n_mean:.2f}× the fixed-horizon {n_mean:,}); mSPRT looked at daily over {args.days} days")
    print(f"  power reached {100 * seq['power']:.1f} %, median stopping day {seq['median_stop_day']:g}, "
          f"mean units used per arm {seq['mean_units_per_arm']:,.0f} "
          f"({seq['mean_units_per_arm'] / n_mean:.2f}× the fixed-horizon n)\n")
    targets.append(Target("sequential design reaches its power (≥ 80 % − 3 pts)", seq["power"],
                          0.8 - POWER_TOLERANCE, ">="))

    # ---- SRM
    skewed = srm_check({"control": 10_400, "treatment": 9_600}, {"control": 0.5, "treatment": 0.5})
    even = srm_check({"control": 10_000, "treatment": 10_000}, {"control": 0.5, "treatment": 0.5})
    srm_aa = srm_sim(rngs[5], args.experiments, 20_000, 0.5)
    srm_skew = srm_sim(rngs[6], args.experiments, 20_000, 0.52)
    print("SRM on 20,000 units (chi-square, flag at p < 0.001)")
    print(f"  52/48 split: p = {skewed.p_value:.2e}, flagged {skewed.mismatch}; 50/50: p = {even.p_value:.3f}, "
          f"flagged {even.mismatch}")
    print(f"  random assignments, {args.experiments:,} each: 50/50 flagged {100 * srm_aa:.2f} %, "
          f"52/48 flagged {100 * srm_skew:.2f} %\n")
    targets += [Target("SRM: 52/48 on 20,000 units flagged", float(skewed.mismatch), 1.0, ">="),
                Target("SRM: 50/50 on 20,000 units not flagged", float(even.mismatch), 0.0, "<="),
                Target("SRM: random 50/50 assignments flagged", srm_aa, 0.005, "<="),
                # Analytic power of the test there: P(χ²₁(λ = 32) > 10.83) ≈ 99.1 %.
                Target("SRM: random 52/48 assignments flagged", srm_skew, 0.98, ">=")]

    for t in targets:
        value = f"{t.value:.1e}" if "replay" in t.name else f"{100 * t.value:.2f} %"
        bound = "≤ 1e-09" if "replay" in t.name else _target_text(t)
        print(f"target {t.name:<76} {value:>10}  {bound:<18} {'PASS' if t.passed else 'MISS'}")
    elapsed = time.perf_counter() - started
    print(f"\nrun time {elapsed:.1f} s")
    report = {"seed": args.seed, "alpha": alpha, "aa": aa,
            "power": [{"design": label, "n": n, "analytic": a, "simulated": s} for label, n, a, s in power_rows],
            "sequential_design": {"n_per_arm": n_seq, "fixed_n_per_arm": n_mean, **seq},
            "srm": {"skewed": skewed.to_dict(), "even": even.to_dict(), "aa_flag_rate": srm_aa,
                    "skew_flag_rate": srm_skew},
            "targets": [t.to_dict() for t in targets]}
    if args.json:
        write_json(args.json, "experiments", argv, report)
    return report


def exit_code(report: dict) -> int:
    """0 when every target passed, 1 on any MISS."""
    return 0 if all(t["pass"] for t in report["targets"]) else 1


if __name__ == "__main__":
    sys.exit(exit_code(main()))
