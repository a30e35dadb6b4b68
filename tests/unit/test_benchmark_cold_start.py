"""benchmarks/cold_start.py's verdict: medians, the two targets, PASS/MISS and the exit
status, on made-up measurements (the benchmark itself takes a minute: run it by hand)."""

from __future__ import annotations

import pytest

from tests.support.benchmarks import load_benchmark


@pytest.fixture
def bench():
    with load_benchmark("cold_start") as module:
        yield module


def sample(cold: float, peak: float) -> dict:
    return {"cold_start_s": cold, "import_s": cold / 4, "process_s": cold + 0.05, "peak_mb": peak, "score": 0.3}


def test_medians_resist_one_slow_run(bench):
    runs = [sample(0.2, 50), sample(0.21, 52), sample(5.0, 51)]
    assert bench.medians(runs) == pytest.approx(
        {"cold_start_s": 0.21, "import_s": 0.0525, "process_s": 0.26, "peak_mb": 51, "score": 0.3})


@pytest.mark.parametrize(("packaged", "pyfunc", "passes"), [
    (sample(0.2, 55), sample(2.5, 300), [True, True]),      # 1/12.5, fits 128 MB
    (sample(0.3, 55), sample(2.5, 300), [False, True]),     # 1/8.3: too slow
    (sample(0.25, 55), sample(2.5, 300), [True, True]),     # exactly 1/10 passes
    (sample(0.2, 140), sample(2.5, 300), [True, False]),    # over Lambda's 128 MB
])
def test_targets_pass_or_miss_and_set_the_exit_status(bench, packaged, pyfunc, passes):
    targets = bench.evaluate(packaged, pyfunc)
    assert [t["pass"] for t in targets] == passes
    assert targets[0]["value"] == pytest.approx(packaged["cold_start_s"] / pyfunc["cold_start_s"])
    assert bench.exit_code(targets) == (0 if all(passes) else 1)
    report = bench.format_report(packaged, pyfunc, targets, repeat=3)
    assert report.count("PASS") == sum(passes) and report.count("MISS") == len(passes) - sum(passes)
    assert f"1/{pyfunc['cold_start_s'] / packaged['cold_start_s']:.1f} of pyfunc's" in report


def test_repeat_must_be_positive(bench):
    with pytest.raises(SystemExit):
        bench.main(["--repeat", "0"])
