"""benchmarks/experiments.py still runs end to end, reports every figure and target, decides
PASS/MISS by its targets and exits non-zero on a MISS (on tiny sizes, so the figures themselves
mean nothing here and the targets' outcomes are not checked)."""

from __future__ import annotations

import pytest

from tests.support.benchmarks import load_benchmark

ARGS = ["--experiments", "40", "--days", "4", "--units-per-day", "60", "--power-sims", "50", "--seed", "3"]


@pytest.fixture(scope="module")
def bench():
    with load_benchmark("experiments") as module:
        yield module


def test_benchmark_reports_every_figure_and_is_deterministic(bench, capsys):
    report = bench.main(ARGS)
    printed = capsys.readouterr().out

    assert set(report["aa"]) == {"proportions", "means"}
    for r in report["aa"].values():
        for key in ("sequential_fpr", "naive_daily_fpr", "fixed_horizon_fpr"):
            assert 0 <= r[key] <= 1
        # Checking every day can only reject more often than checking once at the end.
        assert r["naive_daily_fpr"] >= r["fixed_horizon_fpr"]
        assert r["replay_max_abs_diff"] < 1e-9
    assert [row["n"] for row in report["power"]][1] == report["power"][0]["n"] // 2
    assert all(0 <= row["simulated"] <= 1 and 0 < row["analytic"] < 1 for row in report["power"])
    seq = report["sequential_design"]
    assert seq["n_per_arm"] > seq["fixed_n_per_arm"] and 1 <= seq["median_stop_day"] <= 5
    assert report["srm"]["skewed"]["mismatch"] and not report["srm"]["even"]["mismatch"]

    targets = report["targets"]
    assert len(targets) == 12
    for t in targets:
        assert t["pass"] == bench.verdict(t["value"], t["op"], t["bound"], t["tolerance"])
    assert printed.count("target ") == 12 and printed.count("PASS") + printed.count("MISS") == 12
    assert printed.count("MISS") == sum(not t["pass"] for t in targets)
    assert "naive test, daily" in printed and "run time" in printed
    assert bench.exit_code(report) == (0 if all(t["pass"] for t in targets) else 1)

    again = bench.main(ARGS)
    capsys.readouterr()
    assert again == report
    other = bench.main([*ARGS[:-1], "4"])
    capsys.readouterr()
    assert other["aa"] != report["aa"]


def test_verdict_and_exit_code(bench):
    assert bench.verdict(0.04, "<=", 0.05) and not bench.verdict(0.06, "<=", 0.05)
    assert bench.verdict(0.99, ">=", 0.98) and not bench.verdict(0.97, ">=", 0.98)
    assert bench.verdict(0.78, "within", 0.80, 0.03) and not bench.verdict(0.76, "within", 0.80, 0.03)
    with pytest.raises(ValueError):
        bench.verdict(1.0, "==", 1.0)
    passing = {"targets": [{"pass": True}, {"pass": True}]}
    assert bench.exit_code(passing) == 0
    assert bench.exit_code({"targets": [{"pass": True}, {"pass": False}]}) == 1
    miss = bench.Target("x", 0.2, 0.05, "<=")
    assert not miss.passed and miss.to_dict()["pass"] is False


def test_bad_arguments_are_refused(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(["--units-per-day", "1"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--alpha", "0.7"])
