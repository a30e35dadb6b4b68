"""The pure helpers of benchmarks/serving.py: wrk output parsing, targets, route schedule and
the route-version bookkeeping of the route-change run. No servers are started here."""

from __future__ import annotations

import pytest

from tests.support.benchmarks import load_benchmark

WRK_OUTPUT = """\
Running 20s test @ http://127.0.0.1:40123/invocations
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    24.21ms   12.50ms   1.18s    77.83%
    Req/Sec   336.63    117.56   637.00     70.71%
  Latency Distribution
     50%  850.00us
     75%   29.47ms
     90%   39.25ms
     99%    1.02s
  13354 requests in 20.04s, 714.04KB read
  Socket errors: connect 0, read 2, write 0, timeout 5
  Non-2xx or 3xx responses: 7
Requests/sec:    666.39
Transfer/sec:     35.63KB
"""


@pytest.fixture(scope="module")
def bench():
    with load_benchmark("serving") as module:
        yield module


@pytest.mark.parametrize(("text", "seconds"), [
    ("850.00us", 850e-6), ("22.61ms", 0.02261), ("1.02s", 1.02), ("2.00m", 120.0), ("20.04s", 20.04)])
def test_parse_duration_reads_every_wrk_unit(bench, text, seconds):
    assert bench.parse_duration(text) == pytest.approx(seconds)


def test_parse_duration_rejects_text_without_a_unit(bench):
    with pytest.raises(ValueError, match="not a wrk duration"):
        bench.parse_duration("12.5")


def test_parse_wrk_reads_rate_percentiles_and_errors(bench):
    result = bench.parse_wrk(WRK_OUTPUT)

    assert result.requests == 13354
    assert result.seconds == pytest.approx(20.04)
    assert result.rps == pytest.approx(666.39)
    assert result.latency == pytest.approx({"50": 850e-6, "75": 0.02947, "90": 0.03925, "99": 1.02})
    assert result.non_2xx == 7
    assert result.socket_errors == {"connect": 0, "read": 2, "write": 0, "timeout": 5}
    assert result.errors == 7


def test_parse_wrk_without_errors_counts_zero(bench):
    clean = "\n".join(line for line in WRK_OUTPUT.splitlines() if "errors" not in line and "Non-2xx" not in line)

    result = bench.parse_wrk(clean)

    assert (result.non_2xx, result.errors) == (0, 0)


def test_parse_wrk_without_a_summary_is_an_error(bench):
    with pytest.raises(ValueError, match="no summary"):
        bench.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def _server(bench, rps, p99, non_2xx=0):
    wrk = bench.WrkResult(requests=1000, seconds=20, rps=rps, latency={"50": p99 / 4, "99": p99}, non_2xx=non_2xx)
    return bench.ServerResult("x", wrk=wrk)


def test_evaluate_compares_each_ratio_with_its_target(bench):
    results = {"mlflow": _server(bench, 1000, 0.250), "ceiling": _server(bench, 6000, 0.004),
               "flightdeck": _server(bench, 6500, 0.020)}
    route = bench.RouteChangeResult(rate=500, seconds=60, statuses={503: 2})

    ratios = {r["name"]: r for r in bench.evaluate(results, route)}

    assert ratios["over_ceiling"]["value"] == pytest.approx(6500 / 6000)
    assert ratios["over_ceiling"]["pass"] is True
    slower = {**results, "ceiling": _server(bench, 12000, 0.004)}
    assert {r["name"]: r for r in bench.evaluate(slower, route)}["over_ceiling"]["pass"] is False
    assert ratios["over_mlflow"]["pass"] is True  # 6.5 >= 6
    assert ratios["p99_vs_mlflow"]["value"] == pytest.approx(0.08)
    assert ratios["p99_vs_mlflow"]["pass"] is True
    assert (ratios["route_dropped"]["value"], ratios["route_dropped"]["pass"]) == (2, False)
    assert (ratios["route_5xx"]["value"], ratios["route_5xx"]["pass"]) == (2, False)


def test_evaluate_without_a_server_reports_no_verdict(bench):
    ratios = {r["name"]: r for r in bench.evaluate({"flightdeck": _server(bench, 5000, 0.01)}, None)}

    assert all(r["value"] is None and r["pass"] is None for r in ratios.values())


def test_evaluate_fails_a_gateway_that_answered_errors(bench):
    results = {"mlflow": _server(bench, 100, 1.0), "ceiling": _server(bench, 1000, 0.01),
               "flightdeck": _server(bench, 900, 0.01, non_2xx=3)}

    ratios = {r["name"]: r for r in bench.evaluate(results, None)}

    assert ratios["over_mlflow"]["pass"] is False
    assert "errors" in ratios["over_mlflow"]["note"]


def test_route_change_counts_every_request_without_a_2xx_as_dropped(bench):
    route = bench.RouteChangeResult(rate=500, seconds=60, statuses={404: 1, 500: 2, 503: 1},
                                    connection_errors=1, timeouts=2, not_sent=3)

    assert (route.non_2xx, route.five_xx, route.dropped) == (4, 3, 10)


def test_percentiles_are_nearest_rank(bench):
    values = [float(v) for v in range(1, 101)]

    assert bench.percentiles(values, (50, 99, 99.9)) == {"50": 50.0, "99": 99.0, "99.9": 100.0}
    assert bench.percentiles([]) == {}


def test_route_schedule_alternates_weights_and_switches_blue_green(bench):
    schedule = bench.route_schedule("m", "1", "2", 5)

    labels = [label for label, _ in schedule]
    assert labels == ["canary 50/50", "canary 90/10", "blue-green, canary live", "blue-green, stable live",
                      "canary 50/50"]
    shares = [bench.expected_shares(table) for _, table in schedule]
    assert shares[0] == {"stable": 0.5, "canary": 0.5}
    assert shares[2] == {"canary": 1.0}
    assert shares[3] == {"stable": 1.0}
    for _, table in schedule:  # every table keeps a shadow on the other variant
        endpoint = table["endpoints"]["default"]
        assert endpoint["shadow"]["variant"] in endpoint["variants"]
        assert endpoint["variants"]["stable"] == {"model": "m", "version": "1"}


def test_canary_table_is_the_documented_shape(bench):
    table = bench.canary_table("flightdeck-classifier", "1", "2")

    assert table == {"endpoints": {"default": {
        "policy": "canary",
        "variants": {"stable": {"model": "flightdeck-classifier", "version": "1"},
                     "canary": {"model": "flightdeck-classifier", "version": "2"}},
        "weights": {"stable": 90, "canary": 10},
        "shadow": {"variant": "canary", "percent": 10}}}}


def test_version_progression_orders_versions_and_finds_late_answers(bench):
    observations = [(0.1, 1, "stable"), (0.2, 1, "canary"), (10.3, 2, "stable"), (10.4, 1, "stable"),
                     (10.5, 1, "stable"), (10.9, 2, "canary"), (20.2, 3, "canary")]

    progression, late = bench.version_progression(observations)

    assert [(e["version"], e["count"], e["first"], e["last"]) for e in progression] == [
        (1, 4, 0.1, 10.5), (2, 2, 10.3, 10.9), (3, 1, 20.2, 20.2)]
    assert progression[0]["variants"] == {"stable": 3, "canary": 1}
    assert late == [{"version": 1, "count": 2, "last": 10.5, "newest": 2}]


def test_cpu_split_attributes_cores_to_server_load_and_others(bench):
    start = {"wall": 0.0, "busy": 100.0, "server": 10.0, "children": 1.0, "self": 2.0}
    end = {"wall": 10.0, "busy": 118.0, "server": 24.0, "children": 3.0, "self": 2.5}

    assert bench.cpu_split(start, end) == pytest.approx({"server": 1.4, "load": 0.25, "other": 0.15})
