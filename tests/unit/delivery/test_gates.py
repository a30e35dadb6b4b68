"""Metric gates: the formulas against hand-computed values, the time-uniform guarantees by
small seeded Monte Carlos (the confidence sequences and the error-increase e-process, whose
power on a doubled error rate is measured too), each check's verdicts, decide()'s truth
table, settings and reports."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats

from flightdeck.delivery.gates import (
    FAIL,
    OUTCOMES,
    CheckResult,
    Decision,
    GateReport,
    GateSettings,
    WindowArrays,
    decide,
    decide_batch,
    difference_interval,
    evaluate,
    evaluate_batch,
    mean_and_variance,
    psi_sampling_bias,
)
from flightdeck.delivery.window import VariantWindow
from flightdeck.stats import N_SCORE_BINS, mixture_half_width, proportion_variance, psi

SETTINGS = GateSettings()
ALPHA = SETTINGS.alpha_per_window(3)


def window(requests: int, errors: int = 0, mean_ms: float = 20.0, sd_ms: float = 10.0,
           bins: tuple[int, ...] | None = None, shadow_rows: int = 0, disagreements: int = 0
           ) -> VariantWindow:
    """A window whose latency sums give exactly `mean_ms` and sample standard deviation `sd_ms`."""
    mean, sd = mean_ms / 1000, sd_ms / 1000
    sumsq = requests * mean ** 2 + max(requests - 1, 0) * sd ** 2
    if bins is None:
        rows = requests - errors
        bins = tuple(rows // N_SCORE_BINS + (1 if i < rows % N_SCORE_BINS else 0) for i in range(N_SCORE_BINS))
    return VariantWindow(requests=requests, errors=errors, latency_sum=requests * mean,
                         latency_sumsq=sumsq, rows=sum(bins), score_bins=bins,
                         shadow_rows=shadow_rows, shadow_disagreements=disagreements)


# ------------------------------------------------------------------------------ formulas
def test_difference_interval_floors_each_variance_at_the_pooled_one():
    est, lo, hi = difference_interval(0.3, 0.04, 100, 0.1, 0.01, 1000, 0.05, 0.01)
    pooled = (99 * 0.04 + 999 * 0.01) / 1098
    v = 0.04 / 100 + pooled / 1000  # the baseline's 0.01 is lifted to the pooled variance
    h = mixture_half_width(v, 0.05, 0.01)
    assert float(est) == pytest.approx(0.2)
    assert float(lo) == pytest.approx(0.2 - h) and float(hi) == pytest.approx(0.2 + h)
    # One canary observation: no variance of its own, it borrows the baseline's.
    _, lo1, _ = difference_interval(0.05, np.nan, 1, 0.02, 0.0001, 500, 0.01, 0.01)
    assert float(lo1) == pytest.approx(0.03 - float(mixture_half_width(0.0001 / 1 + 0.0001 / 500, 0.01, 0.01)))


def test_moments_from_sums():
    mean, var = mean_and_variance(6.0, 14.0, 3)  # values 1, 2, 3
    assert float(mean) == pytest.approx(2.0) and float(var) == pytest.approx(1.0)
    mean, var = mean_and_variance(0.0, 0.0, 0)
    assert np.isnan(mean) and np.isnan(var)


def test_psi_sampling_bias_counts_the_bins_non_empty_on_either_side():
    b = [50, 50, 0, 0, 0, 0, 0, 0, 0, 0]
    c = [45, 45, 10, 0, 0, 0, 0, 0, 0, 0]
    assert float(psi_sampling_bias(b, c)) == pytest.approx(2 * (1 / 100 + 1 / 100))
    assert float(psi_sampling_bias(b, [0] * 10)) == 0.0


def test_psi_bias_matches_simulation():
    rng = np.random.default_rng(5)
    probs = np.full(N_SCORE_BINS, 1 / N_SCORE_BINS)
    b, c = rng.multinomial(500, probs, size=4000), rng.multinomial(800, probs, size=4000)
    assert psi(b, c).mean() == pytest.approx(9 * (1 / 500 + 1 / 800), rel=0.1)


# ----------------------------------------------------------- the time-uniform guarantee
def test_gate_false_fail_rate_stays_within_alpha_under_continuous_monitoring():
    """300 sequences × 50 looks at the least favourable null (canary worse by exactly the
    margin): the gate's "fail" rate stays within alpha, while a fixed-sample z-test at the
    same level checked at every look fails far more often."""
    rng = np.random.default_rng(20260101)
    runs, looks, per_look, alpha = 300, 50, 100, 0.05
    settings = GateSettings(alpha=alpha, error_rate_margin=0.02, min_requests=100, min_requests_hard_fail=50)
    pb, pc = 0.05, 0.07
    n = np.full((runs, looks), per_look).cumsum(axis=1).astype(float)
    xb = rng.binomial(per_look, pb, size=(runs, looks)).cumsum(axis=1).astype(float)
    xc = rng.binomial(per_look, pc, size=(runs, looks)).cumsum(axis=1).astype(float)

    def arrays(x):
        m = x.size
        lat = n.ravel() * 0.02
        return WindowArrays(requests=n.ravel(), errors=x.ravel(), latency_sum=lat,
                            latency_sumsq=n.ravel() * 0.02 ** 2 * 1.25, rows=np.zeros(m),
                            score_bins=np.zeros((m, N_SCORE_BINS)), shadow_rows=np.zeros(m),
                            shadow_disagreements=np.zeros(m))

    checks = evaluate_batch(arrays(xb), arrays(xc), settings, alpha)
    per_check_alpha = alpha / 2  # error rate and latency share the window's budget
    gate_ever_failed = (checks["error_rate"].status == FAIL).reshape(runs, looks).any(axis=1).mean()

    se = np.sqrt(proportion_variance(xc, n) / n + proportion_variance(xb, n) / n)
    z = (xc / n - xb / n - settings.error_rate_margin) / se
    naive_ever_failed = (z > stats.norm.ppf(1 - per_check_alpha)).any(axis=1).mean()

    slack = 2 * math.sqrt(per_check_alpha * (1 - per_check_alpha) / runs)
    assert gate_ever_failed <= per_check_alpha + slack
    assert naive_ever_failed > 3 * per_check_alpha  # peeking inflates the fixed-sample test
    assert naive_ever_failed > gate_ever_failed + 0.05


def test_latency_confidence_sequence_covers_at_every_look():
    """Difference of mean lognormal latencies, 300 sequences × 50 looks: the CS misses the
    true difference (0) in at most alpha of the sequences; the fixed 1 - alpha z-interval
    checked at every look misses far more often."""
    rng = np.random.default_rng(11)
    runs, looks, per_look, alpha, tau = 300, 50, 40, 0.05, 0.004
    lat_b = rng.lognormal(math.log(0.02), 0.5, size=(2, runs, looks, per_look))
    n = np.full((runs, looks), per_look).cumsum(axis=1).astype(float)
    moments = [(x.sum(axis=2).cumsum(axis=1), (x ** 2).sum(axis=2).cumsum(axis=1)) for x in lat_b]
    (mb, vb), (mc, vc) = (mean_and_variance(s, ss, n) for s, ss in moments)
    est, lo, hi = difference_interval(mc, vc, n, mb, vb, n, tau, alpha)
    cs_missed = ((lo > 0) | (hi < 0)).any(axis=1).mean()
    z = stats.norm.ppf(1 - alpha / 2)
    naive_missed = (np.abs(est) > z * np.sqrt(vc / n + vb / n)).any(axis=1).mean()
    assert cs_missed <= alpha + 2 * math.sqrt(alpha * (1 - alpha) / runs)
    assert naive_missed > 3 * alpha


# ------------------------------------------------------------------------------- checks
def test_empty_windows_are_insufficient_and_do_not_crash():
    report = evaluate(VariantWindow(), VariantWindow(), SETTINGS, ALPHA)
    assert report.statuses() == {"error_rate": "insufficient", "error_increase": "insufficient",
                                 "latency": "insufficient"}
    for check in report.checks:
        assert check.estimate is None and check.lower is None and check.upper is None
        assert "below the minimum 200" in check.message
    json.dumps(report.to_dict(), allow_nan=False)  # trigger events are stored as JSON


def test_zero_counts_are_handled():
    # No errors anywhere: error rate is non-inferior, never a division by zero.
    report = evaluate(window(20_000, 0), window(20_000, 0), SETTINGS, ALPHA)
    assert report.check("error_rate").status == "pass"
    # Errors on the canary only, none on the baseline: finite numbers and a clear failure.
    report = evaluate(window(20_000, 0), window(5_000, 150), SETTINGS, ALPHA)
    check = report.check("error_rate")
    assert check.status == "fail" and all(math.isfinite(x) for x in (check.lower, check.upper))
    # Errors on the baseline only.
    report = evaluate(window(20_000, 200), window(5_000, 0), SETTINGS, ALPHA)
    assert report.check("error_rate").status == "pass"


def test_error_rate_verdicts():
    fail = evaluate(window(40_000, 400), window(20_000, 500), SETTINGS, ALPHA).check("error_rate")
    assert fail.status == "fail" and fail.lower > SETTINGS.error_rate_margin
    assert fail.estimate == pytest.approx(0.015) and fail.baseline == pytest.approx(0.01)
    assert fail.message.startswith("error rate 2.50 % vs 1.00 % (Δ +1.50 pp, 99.89 % CS [")
    assert fail.message.endswith("exceeds the margin 0.50 pp")
    ok = evaluate(window(40_000, 400), window(20_000, 200), SETTINGS, ALPHA).check("error_rate")
    assert ok.status == "pass" and ok.upper < SETTINGS.error_rate_margin
    unsure = evaluate(window(3_000, 30), window(300, 6), SETTINGS, ALPHA).check("error_rate")
    assert unsure.status == "undecided" and unsure.lower < 0.005 < unsure.upper
    assert unsure.alpha == pytest.approx(ALPHA / 3)  # error rate, error increase and latency


def test_minimum_requests_and_hard_failures():
    # Below min_requests a healthy-looking canary is insufficient...
    check = evaluate(window(5_000, 50), window(150, 1), SETTINGS, ALPHA).check("error_rate")
    assert check.status == "insufficient" and check.lower is not None
    # ...but a canary failing every request is rolled back from min_requests_hard_fail on.
    check = evaluate(window(5_000, 50), window(60, 60), SETTINGS, ALPHA).check("error_rate")
    assert check.status == "fail"
    check = evaluate(window(5_000, 50), window(40, 40), SETTINGS, ALPHA).check("error_rate")
    assert check.status == "insufficient"


def test_latency_verdicts_in_milliseconds():
    fail = evaluate(window(30_000, mean_ms=20), window(5_000, mean_ms=45), SETTINGS, ALPHA).check("latency")
    assert fail.status == "fail" and fail.estimate == pytest.approx(25.0) and fail.unit == "ms"
    assert fail.canary == pytest.approx(45.0) and fail.threshold == 10.0
    ok = evaluate(window(30_000, mean_ms=20), window(5_000, mean_ms=21), SETTINGS, ALPHA).check("latency")
    assert ok.status == "pass"
    # Zero latency variance (e.g. constant sums) does not collapse the interval to a crash.
    flat = evaluate(window(30_000, sd_ms=0), window(5_000, sd_ms=0), SETTINGS, ALPHA).check("latency")
    assert flat.status == "pass"


def test_score_distribution_check():
    same = (100, 200, 300, 400, 500, 500, 400, 300, 200, 100)
    shifted = tuple(reversed((10, 20, 40, 80, 160, 320, 640, 700, 800, 900)))
    report = evaluate(window(3_000, bins=same), window(3_000, bins=same), SETTINGS, ALPHA)
    assert report.check("score_psi").status == "pass"
    check = evaluate(window(3_000, bins=same), window(3_660, bins=shifted), SETTINGS, ALPHA).check("score_psi")
    assert check.status == "fail" and check.estimate > SETTINGS.psi_max
    assert "exceeds the limit 0.200" in check.message
    few = tuple(x // 10 for x in same)  # 300 rows < min_rows_for_distribution
    assert evaluate(window(3_000, bins=same), window(300, bins=few), SETTINGS, ALPHA).check(
        "score_psi").status == "insufficient"
    # A model without scores: no rows on either side, the check does not apply.
    no_scores = evaluate(window(3_000, bins=(0,) * 10), window(3_000, bins=(0,) * 10), SETTINGS, ALPHA)
    assert no_scores.check("score_psi") is None


def test_shadow_check_applies_only_with_shadow_rows_and_takes_a_share_of_alpha():
    base = window(20_000, 200)
    assert evaluate(base, window(20_000, 200), SETTINGS, ALPHA).check("shadow_disagreement") is None
    report = evaluate(base, window(20_000, 200, shadow_rows=5_000, disagreements=500), SETTINGS, ALPHA)
    shadow = report.check("shadow_disagreement")
    assert shadow.status == "fail" and shadow.estimate == pytest.approx(0.1)
    assert shadow.alpha == pytest.approx(ALPHA / 4) and report.check("error_rate").alpha == pytest.approx(ALPHA / 4)
    ok = evaluate(base, window(20_000, 200, shadow_rows=5_000, disagreements=50), SETTINGS, ALPHA)
    assert ok.check("shadow_disagreement").status == "pass"
    few = evaluate(base, window(20_000, 200, shadow_rows=100, disagreements=4), SETTINGS, ALPHA)
    assert few.check("shadow_disagreement").status == "insufficient"


def test_windows_of_unequal_length_post_promotion_bake():
    recorded_baseline = window(500_000, 5_000)  # the whole window before the switch
    report = evaluate(recorded_baseline, window(2_000, 20), SETTINGS, ALPHA, split_traffic=False)
    assert report.check("error_rate").status in ("pass", "undecided")
    assert report.check("error_rate").n_baseline == 500_000
    # Against a recorded baseline the error-increase test does not apply, and the window's
    # budget is split over the confidence sequences alone.
    assert report.check("error_increase") is None
    assert report.check("error_rate").alpha == pytest.approx(ALPHA / 2)


# ------------------------------------------------------------------ error-increase check
def _error_windows(nb, eb, nc, ec):
    """WindowArrays for error counts only (latency and scores do not matter here)."""
    def arrays(n, e):
        n, e = np.asarray(n, dtype=float).ravel(), np.asarray(e, dtype=float).ravel()
        m = n.size
        return WindowArrays(requests=n, errors=e, latency_sum=n * 0.02, latency_sumsq=n * 0.02 ** 2 * 1.25,
                            rows=np.zeros(m), score_bins=np.zeros((m, N_SCORE_BINS)), shadow_rows=np.zeros(m),
                            shadow_disagreements=np.zeros(m))
    return arrays(nb, eb), arrays(nc, ec)


def test_error_increase_false_fail_rate_stays_within_alpha_under_continuous_monitoring():
    """1,000 A/A sequences × 60 looks per traffic share, the error rate shared by both
    variants jumping from 1 % to 4 % and back (an upstream incident): the check's "fail"
    rate stays within alpha at every share (and at the edge of a tolerated ratio), while a
    z-test on the error rates checked at every look fails far more often."""
    rng = np.random.default_rng(20261205)
    runs, looks, per_look, alpha = 1000, 60, 200, 0.05
    settings = GateSettings(alpha=alpha, min_requests=2, min_requests_hard_fail=2)
    common = np.where((np.arange(looks) >= 20) & (np.arange(looks) < 35), 0.04, 0.01)
    for share in (0.05, 0.25, 0.5):
        nc = rng.poisson(per_look * share, size=(runs, looks))
        nb = rng.poisson(per_look * (1 - share), size=(runs, looks))
        ec, eb = rng.binomial(nc, common), rng.binomial(nb, common)
        cum = [x.cumsum(axis=1) for x in (nb, eb, nc, ec)]
        base, canary = _error_windows(*cum)
        check = evaluate_batch(base, canary, settings, alpha)["error_increase"]
        ever_failed = (check.status == FAIL).reshape(runs, looks).any(axis=1).mean()
        budget = check.alpha[0]  # the window's alpha split over three sequential checks
        assert ever_failed <= budget + 2 * math.sqrt(budget * (1 - budget) / runs), share
    # A canary at exactly the tolerated ratio (1.5 × the baseline's rate) is the null's edge.
    tolerant = GateSettings(alpha=alpha, min_requests=2, min_requests_hard_fail=2, error_increase_tolerance=1.5)
    nc15, nb15 = rng.poisson(per_look * 0.25, size=(runs, looks)), rng.poisson(per_look * 0.75, size=(runs, looks))
    base15, canary15 = _error_windows(*(x.cumsum(axis=1) for x in (
        nb15, rng.binomial(nb15, common), nc15, rng.binomial(nc15, 1.5 * common))))
    edge = evaluate_batch(base15, canary15, tolerant, alpha)["error_increase"]
    budget = edge.alpha[0]
    assert (edge.status == FAIL).reshape(runs, looks).any(axis=1).mean() <= budget + 2 * math.sqrt(
        budget * (1 - budget) / runs)
    # The same sequences tested naively (the last share), every look at the check's level:
    nbc, ebc, ncc, ecc = (x.astype(float) for x in cum)
    se = np.sqrt(proportion_variance(ecc, ncc) / ncc + proportion_variance(ebc, nbc) / nbc)
    z = (ecc / ncc - ebc / nbc) / se
    assert (z > stats.norm.ppf(1 - check.alpha[0])).any(axis=1).mean() > 3 * check.alpha[0]


def test_error_increase_catches_a_doubled_error_rate_at_a_five_percent_canary():
    """200 requests/s, 5 % to the canary, errors 1 % → 2 %, looks every 10 s, the default
    budget of one of three windows: most doublings fail within the 300 s bake, while the
    error-rate confidence sequence (non-inferiority margin 0.5 pp) cannot tell a doubling
    from "worse by the margin" in that time."""
    rng = np.random.default_rng(7)
    runs, looks = 400, 30
    nc, nb = rng.poisson(100, size=(runs, looks)), rng.poisson(1_900, size=(runs, looks))
    ec, eb = rng.binomial(nc, 0.02), rng.binomial(nb, 0.01)
    base, canary = _error_windows(*(x.cumsum(axis=1) for x in (nb, eb, nc, ec)))
    checks = evaluate_batch(base, canary, SETTINGS, ALPHA)
    increase = (checks["error_increase"].status == FAIL).reshape(runs, looks)
    margin = (checks["error_rate"].status == FAIL).reshape(runs, looks)
    assert increase.any(axis=1).mean() >= 0.6
    assert np.median(np.where(increase.any(axis=1), increase.argmax(axis=1) + 1, 10 ** 6) * 10) <= 300
    assert margin.any(axis=1).mean() <= 0.05


def test_error_increase_verdicts_and_report():
    # 5 % of the requests, 9.5 % of the errors, by 3,000 canary requests: fails.
    report = evaluate(window(57_000, 570), window(3_000, 60), SETTINGS, ALPHA)
    check = report.check("error_increase")
    assert check.status == "fail" and check.unit == "rate"
    assert check.threshold == pytest.approx(0.05) and check.estimate == pytest.approx(60 / 630)
    assert check.canary == pytest.approx(0.02) and check.baseline == pytest.approx(0.01)
    assert check.lower is None and check.alpha == pytest.approx(ALPHA / 3)
    assert check.message.startswith("the canary served 5.00 % of the requests and 9.52 % of the errors "
                                    "(error rate 2.00 % vs 1.00 %; e-value ")
    assert check.message.endswith("its error rate is surely higher than the baseline's")
    # Tolerating 1.5 × the baseline's error rate moves the threshold to 1.5 × 5 / 102.5 of the
    # errors; the same counts then give far less evidence.
    tolerant = GateSettings(error_increase_tolerance=1.5)
    loose = evaluate(window(57_000, 570), window(3_000, 60), tolerant, ALPHA).check("error_increase")
    assert loose.threshold == pytest.approx(0.075 / 1.025)
    assert "1.5 × the baseline's error rate would be 7.32 % of the errors" in loose.message
    assert loose.status == "pass" and loose.message.endswith("higher than 1.5 × the baseline's")
    # Meanwhile the margin's confidence sequence is undecided: the canary may be only 0.5 pp worse.
    assert report.check("error_rate").status == "undecided"
    assert decide(report, elapsed_s=60, bake_s=300, max_s=900, final=False).outcome == "fail"
    # The same share of errors as of requests: no evidence.
    same = evaluate(window(57_000, 570), window(3_000, 30), SETTINGS, ALPHA).check("error_increase")
    assert same.status == "pass" and same.message.endswith("no evidence of an error rate higher than the baseline's")
    # No errors anywhere.
    none = evaluate(window(20_000, 0), window(1_000, 0), SETTINGS, ALPHA).check("error_increase")
    assert none.status == "pass" and none.estimate is None and "no errors yet" in none.message
    # A canary failing every request is caught from min_requests_hard_fail on, like the others.
    assert evaluate(window(5_000, 50), window(60, 60), SETTINGS, ALPHA).check("error_increase").status == "fail"
    assert evaluate(window(5_000, 50), window(40, 40), SETTINGS, ALPHA).check(
        "error_increase").status == "insufficient"
    # A shadow candidate sees copies of the baseline's requests: the check does not apply.
    shadow = evaluate(window(20_000, 200), window(20_000, 400, shadow_rows=20_000), SETTINGS, ALPHA,
                      split_traffic=False)
    assert shadow.check("error_increase") is None and shadow.check("shadow_disagreement").alpha == pytest.approx(
        ALPHA / 3)
    assert GateReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report


def test_batch_and_single_window_paths_agree():
    rng = np.random.default_rng(3)
    windows = []
    for _ in range(60):
        nb, nc = (int(x) for x in rng.integers(0, 6_000, size=2))
        windows.append((window(nb, int(rng.binomial(nb, 0.01)), mean_ms=20, sd_ms=8,
                               bins=tuple(int(x) for x in rng.multinomial(nb // 2, [0.1] * 10))),
                        window(nc, int(rng.binomial(nc, rng.choice([0.01, 0.03]))),
                               mean_ms=float(rng.choice([20, 40])), sd_ms=8,
                               bins=tuple(int(x) for x in rng.multinomial(nc // 2, [0.1] * 10)))))
    batch = evaluate_batch(WindowArrays.from_windows([b for b, _ in windows]),
                           WindowArrays.from_windows([c for _, c in windows]), SETTINGS, ALPHA)
    statuses = np.stack([c.status for c in batch.values()], axis=1)
    outcomes = decide_batch(statuses, elapsed_s=400, bake_s=300, max_s=900, final=True)
    for i, (b, c) in enumerate(windows):
        report = evaluate(b, c, SETTINGS, ALPHA)
        for check in report.checks:
            assert check.status == ("insufficient", "undecided", "pass", "fail")[batch[check.name].status[i]]
        assert decide(report, elapsed_s=400, bake_s=300, max_s=900, final=True).outcome == OUTCOMES[outcomes[i]]


# ------------------------------------------------------------------------------- decide
def _report(*statuses: str) -> GateReport:
    return GateReport(alpha=ALPHA, checks=[
        CheckResult(name=f"check{i}", status=s, estimate=None, lower=None, upper=None, threshold=1.0,
                    n_baseline=1, n_canary=1, message=f"check{i} is {s}")
        for i, s in enumerate(statuses)])


@pytest.mark.parametrize(("statuses", "elapsed", "final", "expected"), [
    (("fail", "pass"), 10, False, "fail"),  # a failure stops the rollout at once, even baking
    (("fail", "insufficient"), 10, True, "fail"),
    (("pass", "pass"), 10, False, "wait"),  # baking
    (("pass", "pass"), 10, True, "wait"),
    (("insufficient", "pass"), 400, False, "wait"),
    (("insufficient", "pass"), 900, False, "inconclusive"),
    (("insufficient", "undecided"), 1000, True, "inconclusive"),
    (("undecided", "pass"), 400, False, "pass"),  # non-final windows only guard against harm
    (("undecided", "pass"), 400, True, "wait"),  # final windows need non-inferiority
    (("undecided", "pass"), 900, True, "inconclusive"),
    (("pass", "pass"), 300, True, "pass"),
    (("pass", "pass"), 950, False, "pass"),
    ((), 300, True, "pass"),
])
def test_decide_truth_table(statuses, elapsed, final, expected):
    decision = decide(_report(*statuses), elapsed_s=elapsed, bake_s=300, max_s=900, final=final)
    assert isinstance(decision, Decision)
    assert decision.outcome == expected
    assert decision.reason


def test_decide_reasons_name_the_checks():
    decision = decide(_report("pass", "fail"), elapsed_s=10, bake_s=300, max_s=900, final=False)
    assert decision.reason == "check1 failed: check1 is fail"
    decision = decide(_report("undecided", "pass"), elapsed_s=900, bake_s=300, max_s=900, final=True)
    assert "check0" in decision.reason and "non-inferiority" in decision.reason
    assert decision.to_dict() == {"outcome": "inconclusive", "reason": decision.reason}
    with pytest.raises(ValueError, match="bake_s <= max_s"):
        decide(_report("pass"), elapsed_s=10, bake_s=900, max_s=300, final=False)


# ---------------------------------------------------------------- settings and reports
def test_settings_defaults_and_alpha_split():
    assert SETTINGS.alpha == 0.01 and SETTINGS.on_inconclusive == "rollback"
    assert SETTINGS.alpha_per_window(4) == pytest.approx(0.0025)
    with pytest.raises(ValueError, match="positive integer"):
        SETTINGS.alpha_per_window(0)
    assert "false-rollback budget" in GateSettings.model_fields["alpha"].description.lower()


@pytest.mark.parametrize(("values", "message"), [
    ({"alpha": 0}, "alpha"),
    ({"alpha": 0.5}, "less than or equal to 0.2"),
    ({"error_rate_margin": -0.01}, "greater than 0"),
    ({"latency_margin_ms": 0}, "latency_margin_ms"),
    ({"on_inconclusive": "promote"}, "'rollback' or 'ask'"),
    ({"min_requests": 100, "min_requests_hard_fail": 150}, "must not exceed min_requests"),
    ({"alpah": 0.05}, "Extra inputs are not permitted"),
])
def test_settings_reject_bad_values(values, message):
    with pytest.raises(ValidationError, match=message):
        GateSettings(**values)


def test_report_round_trips_and_renders():
    report = evaluate(window(40_000, 400), window(20_000, 500, shadow_rows=2_000, disagreements=40),
                      SETTINGS, ALPHA)
    assert [c.name for c in report.checks] == ["error_rate", "error_increase", "latency", "score_psi",
                                               "shadow_disagreement"]
    data = json.loads(json.dumps(report.to_dict()))
    assert GateReport.from_dict(data) == report
    markdown = report.to_markdown()
    for check in report.checks:
        assert f"| {check.name} | **{check.status}** |" in markdown
        assert check.message in markdown
    with pytest.raises(ValueError, match="unknown check status"):
        CheckResult.from_dict({**data["checks"][0], "status": "maybe"})
