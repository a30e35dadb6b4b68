"""benchmarks/gates.py still runs end to end and reports every scenario, gate and target, the
same way twice for one seed (on a few rollouts, so the figures themselves mean nothing here
and neither the targets nor the timing are checked)."""

from __future__ import annotations

import pytest

from tests.support.benchmarks import load_benchmark

ARGS = ["--runs", "25", "--seed", "3", "--bake-seconds", "120", "--max-seconds", "360", "--look-seconds", "20",
        "--replay-runs", "3"]


@pytest.fixture
def bench():
    with load_benchmark("gates") as module:
        yield module


def test_benchmark_reports_every_scenario_and_is_deterministic(bench, capsys):
    report = bench.main(ARGS)
    printed = capsys.readouterr().out

    gates = ["sequential", "sequential, CS only", "flagger ≥99 %", "flagger ≥98.5 %"]
    assert [r["scenario"] for r in report["results"]] == ["aa", "double", "incident", "within"]
    for result in report["results"]:
        assert list(result["gates"]) == gates
        for r in result["gates"].values():
            assert r["runs"] == 25
            assert abs(r["rollback_rate"] + r["inconclusive_rate"] + r["promoted_rate"] - 1) < 1e-9
            assert r["caught_before_50"] == r["rollback_rate"]
            assert sum(r["rollbacks_by_step"].values()) == round(25 * r["rollback_rate"])
            assert list(r["rollbacks_by_step"]) == ["5%", "25%", "50%"]
            assert r["median_decision_s"] > 0
            assert (r["median_rollback_s"] is None) == (r["rollback_rate"] == 0)
            assert (r["median_rollback_exposure"] is None) == (r["rollback_rate"] == 0)
            assert r["caught_at_first_step"] == r["rollbacks_by_step"]["5%"] / 25
            if r["median_rollback_exposure"] is not None:  # requests at 5 % of 200/s, at least one look
                assert r["median_rollback_exposure"] >= 50
    # A/A and the shared incident: one target each; the doubling: caught before 50 %, at 5 %, time.
    per_scenario = {"aa": 1, "double": 3, "incident": 1}
    assert [(t["scenario"], t["gate"]) for t in report["targets"]] == [
        (scenario, gate) for scenario in ("aa", "double", "incident") for gate in gates
        for _ in range(per_scenario[scenario])]
    assert all(t["pass"] in (True, False) for t in report["targets"])
    assert all(0 <= t["value"] <= 1 for t in report["targets"] if "median time" not in t["target"])
    # Every replayed look agrees between the batch path and evaluate()/decide().
    assert report["replay"]["total"] > 0 and report["replay"]["agree"] == report["replay"]["total"]

    assert printed.count("target ") == 20 and printed.count("PASS") + printed.count("MISS") == 20
    assert "median decision s" in printed and "exposure" in printed and "run time" in printed
    assert "sequential          vs flagger ≥99 %" in printed  # time and exposure against Flagger

    again = bench.main(ARGS)
    capsys.readouterr()
    assert again == report
    other = bench.main([*ARGS[:3], "4", *ARGS[4:]])
    capsys.readouterr()
    assert other["results"] != report["results"]
