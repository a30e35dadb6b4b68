"""The pure parts of benchmarks/balancer.py: wrk output parsing, the alternating schedule, the
paired ratios and the verdict. No server is started here (the benchmark needs a trained model)."""

from __future__ import annotations

import pytest

from tests.support.benchmarks import load_benchmark

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:40123/invocations
  2 threads and 16 connections
  Latency Distribution
     50%   12.00ms
     75%   15.10ms
     90%   20.00ms
     99%   61.50ms
  11800 requests in 10.01s, 3.1MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:   1178.82
Transfer/sec:    320.00KB
"""


@pytest.fixture(scope="module")
def bench():
    with load_benchmark("balancer") as module:
        yield module


def test_parse_wrk_reads_rate_p99_and_failures(bench):
    run = bench.parse_wrk("nginx", 2, WRK_OUTPUT)

    assert (run.arm, run.round, run.rps) == ("nginx", 2, pytest.approx(1178.82))
    assert run.latency["99"] == pytest.approx(0.0615) and run.latency["50"] == pytest.approx(0.012)
    assert (run.non_2xx, run.socket_errors, run.clean) == (4, 3, False)


def test_parse_wrk_without_a_summary_is_an_error(bench):
    with pytest.raises(ValueError, match="no summary"):
        bench.parse_wrk("direct", 0, "unable to connect to 127.0.0.1:1 Connection refused\n")


def test_schedule_alternates_the_arms_inside_every_round(bench):
    assert bench.schedule(2) == [(0, "direct"), (0, "nginx"), (0, "nginx-2"),
                                 (1, "direct"), (1, "nginx"), (1, "nginx-2")]
    with pytest.raises(ValueError, match="rounds"):
        bench.schedule(0)


def _run(bench, arm, round_, rps, p99, non_2xx=0):
    return bench.Run(arm, round_, rps, {"50": p99 / 4, "99": p99}, non_2xx)


def test_ratios_are_paired_within_a_round_and_the_median_decides(bench):
    # The machine slows down in round 1: paired ratios divide it out (0.9, 0.85, 0.8 → 0.85).
    runs = [_run(bench, "direct", 0, 1000, 0.040), _run(bench, "nginx", 0, 900, 0.050),
            _run(bench, "direct", 1, 500, 0.080), _run(bench, "nginx", 1, 425, 0.120),
            _run(bench, "direct", 2, 1000, 0.040), _run(bench, "nginx", 2, 800, 0.040),
            _run(bench, "nginx-2", 0, 1100, 0.060)]

    summary = bench.summarise(runs)

    nginx = summary["ratios"]["nginx"]
    assert nginx["throughput_ratios"] == pytest.approx([0.9, 0.85, 0.8])
    assert nginx["throughput_ratio"] == pytest.approx(0.85)
    assert nginx["p99_ratio"] == pytest.approx(1.25)
    assert summary["ratios"]["nginx-2"]["throughput_ratio"] == pytest.approx(1.1)
    assert summary["arms"]["direct"]["median_rps"] == 1000
    assert summary["target"] == {"name": "nginx_over_direct", "value": pytest.approx(0.85), "target": ">= 0.8",
                                 "pass": True, "note": ""}
    assert "PASS  nginx / direct throughput 0.85" in bench.report(summary)


def test_below_the_target_or_with_errors_is_a_miss(bench):
    slow = bench.summarise([_run(bench, "direct", 0, 1000, 0.04), _run(bench, "nginx", 0, 700, 0.05)])
    failing = bench.summarise([_run(bench, "direct", 0, 1000, 0.04), _run(bench, "nginx", 0, 950, 0.05, 3)])

    assert (slow["target"]["pass"], failing["target"]["pass"]) == (False, False)
    assert failing["target"]["note"] == "errors under load"
    assert "MISS" in bench.report(slow)


def test_no_direct_arm_gives_no_verdict(bench):
    summary = bench.summarise([_run(bench, "nginx", 0, 900, 0.05)])

    assert summary["target"]["value"] is None and summary["target"]["pass"] is None
    assert "n/a" in bench.report(summary)


def test_bad_arguments_are_refused(bench):
    with pytest.raises(SystemExit):
        bench._parse(["--rounds", "0"])
    with pytest.raises(SystemExit):
        bench._parse(["--duration", "-1"])
