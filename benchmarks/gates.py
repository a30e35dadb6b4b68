"""Metric-gate benchmark: simulated canary rollouts judged by the sequential gates of
flightdeck.delivery.gates and by a Flagger-style threshold gate, on the same traffic.

Each rollout sends `--rps` requests/s, split canary/baseline 5 → 25 → 50 % (then 100 %, the
end). The sequential gate looks every `--look-seconds` at the step's cumulative windows
and calls `evaluate_batch` / `decide_batch` (the array form of `evaluate` / `decide`, the
code the promotion DAGs run; a sample of looks is replayed through `evaluate` / `decide`
themselves and must agree): a step lasts at least `--bake-seconds` and at most
`--max-seconds`; the 50 % step is the final window (it needs non-inferiority established);
the rollout's alpha is split over its three windows. Two forms of it run: "sequential", the
gate as the DAGs run it on a canary step (the confidence sequences plus the error-increase
e-process), and "sequential, CS only", the same gate without the e-process (as it was
before the e-process, and as it still is against a recorded baseline). The Flagger-style
gate checks the canary's success rate over each `--flagger-interval` against a fixed
minimum and rolls back after `--flagger-threshold` failed checks; a step advances after
bake / interval passed checks.

Scenarios: identical variants (A/A), a canary whose error rate doubles (1 % → 2 %), an A/A
rollout during a shared upstream incident (both variants at 1.5 %), and for information a
canary 30 % worse (1 % → 1.3 %, inside the 0.5 pp margin: what the error-increase test costs). Prints, per scenario
and gate, the rollback, inconclusive and promotion rates, where rollbacks happened, the
median time to decision and to rollback, the exposure (requests the canary served before it
was rolled back) against the Flagger-style gates', and the targets with PASS/MISS:
    python benchmarks/gates.py [--runs 1000] [--seed 7] [--bake-seconds 300] [--look-seconds 10]
                               [--rps 200] [--max-seconds 900] [--alpha 0.01]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from flightdeck.delivery.gates import (
    INCONCLUSIVE,
    OUTCOMES,
    PROMOTE,
    ROLLBACK,
    WAIT,
    GateSettings,
    WindowArrays,
    decide,
    decide_batch,
    evaluate,
    evaluate_batch,
)
from flightdeck.devtools.results import write_json
from flightdeck.stats import SCORE_EDGES

STEPS = (5, 25, 50)  # canary weight in % of each gated step; 100 % follows the last one
LATENCY_MEDIAN_S = 0.020  # lognormal latency, the same for both variants in every scenario
LATENCY_SIGMA = 0.5
SCORE_BETA = (2.0, 5.0)  # prediction scores ~ Beta(2, 5), binned on SCORE_EDGES
REPLAY_RUNS = 10  # default: rollouts per scenario whose every look is replayed through evaluate()/decide()
TARGET_AA = 0.01  # A/A rolled back in at most 1 % of runs, with or without a shared incident
TARGET_CAUGHT = 0.95  # a doubled error rate caught before the canary passes 50 % in ≥ 95 %
TARGET_ROLLBACK_S = 360.0  # ... and rolled back within 360 s (median), as fast as a threshold gate
TARGET_CAUGHT_FIRST = 0.5  # ... at the first (5 %) step in ≥ 50 % of runs

PROMOTED = -1  # outcome code of a rollout that reached 100 %


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    baseline_error: float
    canary_error: float
    target: str | None  # "aa" or "caught": which targets this scenario is judged on


SCENARIOS = (
    Scenario("aa", "A/A, 1 % errors", 0.01, 0.01, "aa"),
    Scenario("double", "errors double 1 % → 2 %", 0.01, 0.02, "caught"),
    Scenario("incident", "A/A, shared incident 1.5 %", 0.015, 0.015, "aa"),
    # Worse, but within the 0.5 pp margin: the price of testing "any increase" (information).
    Scenario("within", "errors +30 % 1 % → 1.3 % (info)", 0.01, 0.013, None),
)


@dataclass
class StepTraffic:
    """One step's traffic for every run, per look interval: arrays of shape (runs, looks)."""

    weight: float
    requests: dict[str, np.ndarray]  # "baseline" / "canary"
    errors: dict[str, np.ndarray]
    latency_sum: dict[str, np.ndarray]
    latency_sumsq: dict[str, np.ndarray]
    score_bins: dict[str, np.ndarray]  # (runs, looks, bins)
    cumulative: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    def window(self, arm: str, runs: np.ndarray, look: int) -> WindowArrays:
        """Cumulative window of `arm` over looks 0..look for the given runs."""
        cum = self._cumulative(arm)
        n = cum["requests"][runs, look]
        zero = np.zeros_like(n)
        return WindowArrays(requests=n, errors=cum["errors"][runs, look],
                            latency_sum=cum["latency_sum"][runs, look],
                            latency_sumsq=cum["latency_sumsq"][runs, look],
                            rows=cum["rows"][runs, look], score_bins=cum["score_bins"][runs, look],
                            shadow_rows=zero, shadow_disagreements=zero)

    def _cumulative(self, arm: str) -> dict[str, np.ndarray]:
        cache = self.cumulative
        if arm not in cache:
            requests = self.requests[arm].astype(float)
            errors = self.errors[arm].astype(float)
            cache[arm] = {
                "requests": requests.cumsum(axis=1), "errors": errors.cumsum(axis=1),
                "latency_sum": self.latency_sum[arm].cumsum(axis=1),
                "latency_sumsq": self.latency_sumsq[arm].cumsum(axis=1),
                "rows": (requests - errors).cumsum(axis=1),
                "score_bins": self.score_bins[arm].astype(float).cumsum(axis=1),
            }
        return cache[arm]


# ----------------------------------------------------------------------------- traffic
def score_probabilities() -> np.ndarray:
    cdf = stats.beta.cdf(np.array(SCORE_EDGES), *SCORE_BETA)
    probs = np.diff(cdf)
    return probs / probs.sum()


def _latency_moments() -> tuple[float, float, np.ndarray]:
    """Mean of X and X² per request, and the Cholesky factor of Cov(X, X²) (lognormal X)."""
    mu = math.log(LATENCY_MEDIAN_S)
    m = [math.exp(k * mu + k * k * LATENCY_SIGMA ** 2 / 2) for k in range(5)]
    cov = np.array([[m[2] - m[1] ** 2, m[3] - m[1] * m[2]],
                    [m[3] - m[1] * m[2], m[4] - m[2] ** 2]])
    return m[1], m[2], np.linalg.cholesky(cov)


def simulate_step(rng: np.random.Generator, runs: int, looks: int, weight: float, rps: float,
                  look_s: float, errors: dict[str, float]) -> StepTraffic:
    """Poisson arrivals split by `weight`, binomial errors, latency sums, score histograms.

    Latency sums per look are drawn from their central-limit approximation (a bivariate
    normal with the lognormal's exact moments) instead of request by request: a look holds
    ≥ 100 requests per variant at the defaults, and the gates only read the sums.
    """
    m1, m2, chol = _latency_moments()
    probs = score_probabilities()
    shares = {"baseline": 1.0 - weight, "canary": weight}
    out: dict[str, dict[str, np.ndarray]] = {k: {} for k in
                                              ("requests", "errors", "latency_sum", "latency_sumsq", "score_bins")}
    for arm, share in shares.items():
        n = rng.poisson(rps * share * look_s, size=(runs, looks))
        e = rng.binomial(n, errors[arm])
        z = rng.standard_normal(size=(2, runs, looks))
        root = np.sqrt(n)
        out["requests"][arm] = n
        out["errors"][arm] = e
        out["latency_sum"][arm] = np.maximum(n * m1 + root * chol[0, 0] * z[0], 0.0)
        out["latency_sumsq"][arm] = np.maximum(n * m2 + root * (chol[1, 0] * z[0] + chol[1, 1] * z[1]), 0.0)
        out["score_bins"][arm] = rng.multinomial(n - e, probs)
    return StepTraffic(weight=weight, **out)


# -------------------------------------------------------------------------------- gates
@dataclass
class GateRun:
    """Per-run results of one gate on one scenario."""

    outcome: np.ndarray  # ROLLBACK, INCONCLUSIVE or PROMOTED
    seconds: np.ndarray  # from rollout start to the decision (rollback or promotion)
    step: np.ndarray  # index of the step where it was decided (len(STEPS) when promoted)
    exposure: np.ndarray  # requests the canary served until the decision


def run_sequential(traffic: list[StepTraffic], settings: GateSettings, *, bake_s: float,
                   max_s: float, look_s: float, replay: list | None = None,
                   split_traffic: bool = True, replay_runs: int = REPLAY_RUNS) -> GateRun:
    """The sequential gate on every run at once; `replay` collects looks of the first runs.
    `split_traffic=False` leaves the error-increase e-process out (the confidence sequences only)."""
    runs = traffic[0].requests["canary"].shape[0]
    alpha = settings.alpha_per_window(len(STEPS))
    outcome = np.full(runs, PROMOTED)
    seconds = np.zeros(runs)
    exposure = np.zeros(runs)
    step_of = np.full(runs, len(STEPS))
    alive = np.ones(runs, dtype=bool)
    for s, step in enumerate(traffic):
        final = s == len(STEPS) - 1
        in_step = alive.copy()
        looks = step.requests["canary"].shape[1]
        served = step.requests["canary"].cumsum(axis=1)
        for j in range(looks):
            idx = np.flatnonzero(in_step)
            if idx.size == 0:
                break
            elapsed = (j + 1) * look_s
            checks = evaluate_batch(step.window("baseline", idx, j), step.window("canary", idx, j),
                                    settings, alpha, split_traffic=split_traffic)
            statuses = np.stack([c.status for c in checks.values()], axis=1)
            decided = decide_batch(statuses, elapsed_s=elapsed, bake_s=bake_s, max_s=max_s, final=final)
            if replay is not None:
                for i in np.flatnonzero(idx < replay_runs):
                    replay.append((s, int(idx[i]), j, elapsed, final, int(decided[i]), split_traffic))
            stop = idx[(decided == ROLLBACK) | (decided == INCONCLUSIVE)]
            outcome[stop] = decided[(decided == ROLLBACK) | (decided == INCONCLUSIVE)]
            seconds[stop] += elapsed
            step_of[stop] = s
            alive[stop] = False
            advance = idx[decided == PROMOTE]
            seconds[advance] += elapsed
            decided_now = idx[decided != WAIT]
            exposure[decided_now] += served[decided_now, j]
            in_step[stop] = False
            in_step[advance] = False
        if in_step.any():
            raise RuntimeError("a step outlived its deadline: the traffic horizon is too short")
    return GateRun(outcome, seconds, step_of, exposure)


def run_flagger(traffic: list[StepTraffic], *, min_success: float, interval_s: float,
                threshold: int, bake_s: float, look_s: float) -> GateRun:
    """Flagger's request-success-rate check: every interval, the canary's success rate over
    that interval must be ≥ `min_success` % (no requests counts as a failed check, as in
    Flagger); `threshold` failed checks in the rollout roll it back; a failed check halts
    advancement, and a step advances after bake / interval passed checks."""
    per_check = int(round(interval_s / look_s))
    needed = max(1, math.ceil(bake_s / interval_s))
    runs = traffic[0].requests["canary"].shape[0]
    outcome = np.full(runs, PROMOTED)
    seconds = np.zeros(runs)
    exposure = np.zeros(runs)
    step_of = np.full(runs, len(STEPS))
    alive = np.ones(runs, dtype=bool)
    failed = np.zeros(runs, dtype=int)
    for s, step in enumerate(traffic):
        n = step.requests["canary"]
        e = step.errors["canary"]
        n_checks = n.shape[1] // per_check
        req = n[:, :n_checks * per_check].reshape(runs, n_checks, per_check).sum(axis=2)
        err = e[:, :n_checks * per_check].reshape(runs, n_checks, per_check).sum(axis=2)
        served = req.cumsum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            bad = (req == 0) | (100.0 * (1.0 - err / np.maximum(req, 1)) < min_success)
        in_step = alive.copy()
        passed = np.zeros(runs, dtype=int)
        for c in range(n_checks):
            elapsed = (c + 1) * interval_s
            failed += in_step & bad[:, c]
            passed += in_step & ~bad[:, c]
            stop = in_step & (failed >= threshold)
            advance = in_step & ~stop & (passed >= needed)
            outcome[stop] = ROLLBACK
            step_of[stop] = s
            seconds[stop | advance] += elapsed
            exposure[stop | advance] += served[stop | advance, c]
            alive &= ~stop
            in_step &= ~(stop | advance)
        if in_step.any():
            raise RuntimeError("a Flagger step outlived the traffic horizon")
    return GateRun(outcome, seconds, step_of, exposure)


# ------------------------------------------------------------------------------ report
def summarise(run: GateRun) -> dict:
    n = len(run.outcome)
    rolled = run.outcome == ROLLBACK
    inconclusive = run.outcome == INCONCLUSIVE
    stopped = rolled | inconclusive
    return {
        "runs": n,
        "rollback_rate": float(rolled.mean()),
        "inconclusive_rate": float(inconclusive.mean()),
        "promoted_rate": float((run.outcome == PROMOTED).mean()),
        # Every rollback happens during a gated step, i.e. before the canary passes 50 %.
        "caught_before_50": float(rolled.mean()),
        "stopped_rate": float(stopped.mean()),
        "rollbacks_by_step": {f"{w}%": int((rolled & (run.step == s)).sum()) for s, w in enumerate(STEPS)},
        "caught_at_first_step": float((rolled & (run.step == 0)).mean()),
        "median_decision_s": float(np.median(run.seconds)),
        "median_rollback_s": float(np.median(run.seconds[rolled])) if rolled.any() else None,
        # Requests the canary served before it was rolled back (what a bad canary costs users).
        "median_rollback_exposure": float(np.median(run.exposure[rolled])) if rolled.any() else None,
    }


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _secs(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


def replay_agreement(replay: list, traffic: list[StepTraffic], settings: GateSettings, *,
                     bake_s: float, max_s: float) -> tuple[int, int]:
    """Re-decide recorded looks with the one-window API; return (agreeing, total)."""
    alpha = settings.alpha_per_window(len(STEPS))
    agree = 0
    for s, run, j, elapsed, final, code, split_traffic in replay:
        idx = np.array([run])
        baseline = traffic[s].window("baseline", idx, j).window(0)
        canary = traffic[s].window("canary", idx, j).window(0)
        report = evaluate(baseline, canary, settings, alpha, split_traffic=split_traffic)
        decision = decide(report, elapsed_s=elapsed, bake_s=bake_s, max_s=max_s, final=final)
        agree += decision.outcome == OUTCOMES[code]
    return agree, len(replay)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--runs", type=int, default=1000, help="simulated rollouts per scenario")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--bake-seconds", type=float, default=300.0, help="minimum time per step")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="deadline per step (default 3 × bake): then undecided means inconclusive")
    p.add_argument("--look-seconds", type=float, default=10.0, help="sequential gate: time between looks")
    p.add_argument("--alpha", type=float, default=None,
                   help="sequential gate: the rollout's false-rollback budget (default: GateSettings' own)")
    p.add_argument("--error-increase-tolerance", type=float, default=None,
                   help="sequential gate: error-rate ratio the error-increase check lets pass (default: GateSettings')")
    p.add_argument("--rps", type=float, default=200.0, help="total requests/s over both variants")
    p.add_argument("--flagger-interval", type=float, default=60.0, help="Flagger: analysis interval (s)")
    p.add_argument("--flagger-threshold", type=int, default=5, help="Flagger: failed checks before rollback")
    p.add_argument("--replay-runs", type=int, default=REPLAY_RUNS,
                   help="rollouts per scenario whose looks are replayed through evaluate()/decide()")
    p.add_argument("--json", metavar="PATH", help="also write the result, the command and the date as JSON")
    p.add_argument("--flagger-min-success", default="99,98.5",
                   help="Flagger: request-success-rate minimum(s) in %%, comma-separated, one gate each")
    args = p.parse_args(argv)
    if args.max_seconds is None:
        args.max_seconds = 3 * args.bake_seconds
    if args.replay_runs < 0:
        p.error("--replay-runs must not be negative")
    if args.runs < 1 or args.rps <= 0 or args.look_seconds <= 0:
        p.error("--runs, --rps and --look-seconds must be positive")
    if args.alpha is not None and not 0 < args.alpha <= 0.2:
        p.error("--alpha must lie in (0, 0.2]")
    if args.error_increase_tolerance is not None and not 1 <= args.error_increase_tolerance <= 100:
        p.error("--error-increase-tolerance must lie in [1, 100]")
    if not 0 < args.bake_seconds <= args.max_seconds:
        p.error("need 0 < --bake-seconds <= --max-seconds")
    ratio = args.flagger_interval / args.look_seconds
    if args.flagger_interval <= 0 or abs(ratio - round(ratio)) > 1e-9:
        p.error("--flagger-interval must be a positive multiple of --look-seconds")
    args.flagger_min_success = [float(x) for x in str(args.flagger_min_success).split(",") if x.strip()]
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    chosen = {"alpha": args.alpha, "error_increase_tolerance": args.error_increase_tolerance}
    settings = GateSettings(**{k: v for k, v in chosen.items() if v is not None})
    bake, max_s, look = args.bake_seconds, args.max_seconds, args.look_seconds
    # Enough looks for the longest step either gate can take.
    flagger_horizon = (math.ceil(bake / args.flagger_interval) + args.flagger_threshold) * args.flagger_interval
    looks = math.ceil(max(max_s, flagger_horizon) / look) + 1
    gates = ["sequential", "sequential, CS only"] + [f"flagger ≥{m:g} %" for m in args.flagger_min_success]

    print(f"Gate simulation: {args.runs:,} rollouts per scenario, {args.rps:g} requests/s, steps "
          f"{' → '.join(f'{w} %' for w in STEPS)} (then 100 %), seed {args.seed}")
    print(f"  sequential: looks every {look:g} s, bake {bake:g} s, deadline {max_s:g} s per step, "
          f"alpha {settings.alpha:g} over {len(STEPS)} windows, margins {100 * settings.error_rate_margin:g} pp "
          f"/ {settings.latency_margin_ms:g} ms, PSI ≤ {settings.psi_max:g}, min {settings.min_requests} "
          f"requests, error-increase tolerance ×{settings.error_increase_tolerance:g}, "
          f"on_inconclusive={settings.on_inconclusive}; the {STEPS[-1]} % step is final; "
          "'CS only' leaves out the error-increase e-process")
    print(f"  flagger:    request-success-rate over each {args.flagger_interval:g} s interval, failure "
          f"limit {args.flagger_threshold}, a step advances after "
          f"{max(1, math.ceil(bake / args.flagger_interval))} passed checks")
    print(f"  latency lognormal (median {1000 * LATENCY_MEDIAN_S:g} ms, σ {LATENCY_SIGMA:g}) and scores "
          f"Beta{SCORE_BETA} identical for both variants; same traffic for every gate\n")

    seeds = np.random.SeedSequence(args.seed).spawn(len(SCENARIOS))
    results = []
    replay_total = [0, 0]
    for scenario, seed in zip(SCENARIOS, seeds, strict=True):
        rng = np.random.default_rng(seed)
        errors = {"baseline": scenario.baseline_error, "canary": scenario.canary_error}
        traffic = [simulate_step(rng, args.runs, looks, w / 100, args.rps, look, errors) for w in STEPS]
        replay: list = []
        # Looks of the gate as the DAGs run it are replayed (the CS-only form runs the same code).
        runs = {gate: run_sequential(traffic, settings, bake_s=bake, max_s=max_s, look_s=look,
                                     replay=replay if split else None, split_traffic=split,
                                     replay_runs=args.replay_runs)
                for gate, split in zip(gates[:2], (True, False), strict=True)}
        for gate, minimum in zip(gates[2:], args.flagger_min_success, strict=True):
            runs[gate] = run_flagger(traffic, min_success=minimum, interval_s=args.flagger_interval,
                                     threshold=args.flagger_threshold, bake_s=bake, look_s=look)
        agree, total = replay_agreement(replay, traffic, settings, bake_s=bake, max_s=max_s)
        replay_total[0] += agree
        replay_total[1] += total
        results.append({"scenario": scenario.key, "label": scenario.label, "target": scenario.target,
                        "gates": {gate: summarise(run) for gate, run in runs.items()}})

    header = (f"{'scenario':<33} {'gate':<19} {'rolled back':>11} {'inconcl.':>9} {'promoted':>9} "
              f"{'rollbacks at 5/25/50 %':>23} {'median decision s':>18} {'median rollback s':>18} "
              f"{'exposure':>9}")
    print(header)
    print("-" * len(header))
    for result in results:
        for gate, r in result["gates"].items():
            by_step = "/".join(str(v) for v in r["rollbacks_by_step"].values())
            exposure = r["median_rollback_exposure"]
            print(f"{result['label']:<33} {gate:<19} {_pct(r['rollback_rate']):>11} "
                  f"{_pct(r['inconclusive_rate']):>9} {_pct(r['promoted_rate']):>9} {by_step:>23} "
                  f"{_secs(r['median_decision_s']):>18} {_secs(r['median_rollback_s']):>18} "
                  f"{_secs(exposure):>9}")
    print("\n'rolled back' counts 'fail' decisions; 'inconcl.' runs reached a step's deadline without "
          f"enough evidence and are rolled back too (on_inconclusive={settings.on_inconclusive}). "
          "'exposure': median requests the canary served before its rollback.")

    double = next(r for r in results if r["scenario"] == "double")["gates"]
    print("\nerrors double, against the Flagger-style gates of the same run (ratio = gate / Flagger):")
    for gate, r in double.items():
        if gate.startswith("flagger") or r["median_rollback_s"] is None:
            continue
        for other, f in double.items():
            if not other.startswith("flagger") or f["median_rollback_s"] is None:
                continue
            print(f"  {gate:<19} vs {other:<16} median time to rollback "
                  f"×{r['median_rollback_s'] / f['median_rollback_s']:.2f}, exposure "
                  f"×{r['median_rollback_exposure'] / f['median_rollback_exposure']:.2f}")

    targets = []
    print()
    for result in results:
        if result["target"] is None:
            continue
        for gate, r in result["gates"].items():
            if result["target"] == "aa":
                checks = [(r["stopped_rate"], r["stopped_rate"] <= TARGET_AA, _pct,
                           f"{result['label']}: rolled back (fail or inconcl.) ≤ {100 * TARGET_AA:g} %")]
            else:
                rollback_s = r["median_rollback_s"]
                checks = [
                    (r["caught_before_50"], r["caught_before_50"] >= TARGET_CAUGHT, _pct,
                     f"1 % → 2 % caught before the canary passes {STEPS[-1]} % ≥ {100 * TARGET_CAUGHT:g} %"),
                    (r["caught_at_first_step"], r["caught_at_first_step"] >= TARGET_CAUGHT_FIRST, _pct,
                     f"1 % → 2 % caught at the {STEPS[0]} % step ≥ {100 * TARGET_CAUGHT_FIRST:g} %"),
                    (rollback_s, rollback_s is not None and rollback_s <= TARGET_ROLLBACK_S, _secs,
                     f"1 % → 2 % median time to rollback ≤ {TARGET_ROLLBACK_S:g} s"),
                ]
            for value, ok, fmt, what in checks:
                targets.append({"scenario": result["scenario"], "gate": gate, "target": what, "value": value,
                                "pass": bool(ok)})
                print(f"target {what:<62} {gate:<19} {fmt(value):>8}  {'PASS' if ok else 'MISS'}")
    print(f"\nreplayed {replay_total[1]:,} looks of the first {args.replay_runs} rollouts per scenario through "
          f"evaluate()/decide(): {replay_total[0]:,} agree")
    print(f"run time {time.perf_counter() - started:.1f} s")
    report = {"settings": settings.model_dump(), "runs": args.runs, "seed": args.seed,
              "results": results, "targets": targets,
              "replay": {"agree": replay_total[0], "total": replay_total[1]}}
    if args.json:
        write_json(args.json, "gates", argv, report)
    return report


if __name__ == "__main__":
    main()
    sys.exit(0)
