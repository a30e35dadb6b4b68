"""Metric sources without a gateway or Prometheus: canned API answers, the bucket maths, and the
typed errors (over real loopback sockets: a closed port and a small HTTP server)."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from flightdeck.delivery.sources import make_source
from flightdeck.delivery.sources.base import (
    MetricSourceError,
    WindowStart,
    bucket_counts,
    by_variant,
    estimate_sumsq,
    merge,
)
from flightdeck.delivery.sources.gateway import GatewayStatsSource
from flightdeck.delivery.sources.prometheus import (
    PrometheusSource,
    parse_query_response,
    score_bins_from_buckets,
    series_increase,
    windows_from_series,
)
from flightdeck.delivery.window import VariantWindow
from flightdeck.errors import ConfigError, FlightdeckError
from flightdeck.serving.metrics import LATENCY_BUCKETS
from flightdeck.stats import SCORE_EDGES
from tests.support import free_port

T0 = 1_800_000_000.0  # the window starts here in the canned answers
SCORE_LES = [*(str(e) for e in SCORE_EDGES[1:]), "+Inf"]


def series(name: str, variant: str, version: str, values: list[float], times: list[float] | None = None,
           **labels: str) -> dict:
    """One series of a /api/v1/query matrix, as Prometheus writes it (values as strings)."""
    # By default the first sample is just before the window and the others inside it.
    times = times if times is not None else [T0 - 1, *(T0 + i for i in range(1, len(values)))]
    metric = {"__name__": name, "endpoint": "credit", "variant": variant, "model_version": version,
              "job": "flightdeck", "instance": labels.pop("instance", "127.0.0.1:8000"), **labels}
    return {"metric": metric, "values": [[t, str(v)] for t, v in zip(times, values, strict=True)]}


def matrix(*result: dict) -> dict:
    return {"status": "success", "data": {"resultType": "matrix", "result": list(result)}}


def histogram(name: str, variant: str, version: str, cumulative_before: list[float],
              cumulative_after: list[float], les: list[str]) -> list[dict]:
    return [series(name, variant, version, [before, after], le=le)
            for le, before, after in zip(les, cumulative_before, cumulative_after, strict=True)]


# ---- parsing Prometheus answers -----------------------------------------------------------------
def test_a_matrix_answer_is_parsed_and_an_empty_one_gives_no_windows():
    answer = matrix(series("flightdeck_requests_total", "stable", "1", [3, 10]))
    assert parse_query_response(answer) == answer["data"]["result"]
    assert windows_from_series(parse_query_response(matrix()), T0) == {}


@pytest.mark.parametrize("answer, expected", [
    ({"status": "error", "errorType": "bad_data", "error": "parse error at char 7"}, "bad_data: parse error at char 7"),
    ({"status": "success", "data": {"resultType": "vector", "result": []}}, "'vector' where a matrix"),
    ({"status": "success", "data": None}, "NoneType where a matrix"),
])
def test_an_error_or_the_wrong_shape_is_a_typed_error(answer, expected):
    with pytest.raises(MetricSourceError, match=expected) as caught:
        parse_query_response(answer, "http://prom:9090/api/v1/query")
    assert isinstance(caught.value, FlightdeckError) and "Fix:" in str(caught.value)
    assert caught.value.url == "http://prom:9090/api/v1/query"


def test_series_without_the_gateway_labels_are_a_typed_error():
    stray = {"metric": {"__name__": "flightdeck_requests_total", "endpoint": "credit"}, "values": [[T0, "1"]]}
    with pytest.raises(MetricSourceError, match="not the gateway's metrics"):
        windows_from_series([stray], T0)


# ---- counter increases --------------------------------------------------------------------------
def test_increase_counts_from_the_last_sample_at_or_before_the_start():
    assert series_increase([[T0 - 2, "4"], [T0, "5"], [T0 + 1, "9"], [T0 + 2, "12"]], T0) == 7


def test_a_series_born_inside_the_window_counts_from_zero():
    # PromQL's increase() would say 0 here: its first sample is its baseline. A canary's only
    # error looks exactly like this.
    assert series_increase([[T0 + 1, "1"], [T0 + 2, "1"]], T0) == 1


def test_a_counter_reset_counts_the_new_value_from_zero():
    assert series_increase([[T0, "10"], [T0 + 1, "15"], [T0 + 2, "3"], [T0 + 3, "8"]], T0) == 5 + 3 + 5


def test_nan_samples_are_skipped():
    assert series_increase([[T0, "2"], [T0 + 1, "NaN"], [T0 + 2, "6"]], T0) == 4


# ---- buckets --------------------------------------------------------------------------------------
def test_cumulative_buckets_become_per_bucket_counts_in_any_order():
    assert bucket_counts({math.inf: 10.0, 0.5: 4.0, 0.1: 1.0, 1.0: 9.0}) == [1.0, 3.0, 5.0, 1.0]


def test_score_buckets_become_the_ten_bins_and_scores_above_one_join_the_last():
    cumulative = dict(zip([*SCORE_EDGES[1:], math.inf], [1, 1, 3, 3, 3, 7, 7, 7, 8, 10, 11], strict=True))
    assert score_bins_from_buckets(cumulative) == (1, 0, 2, 0, 0, 4, 0, 0, 1, 3)
    assert score_bins_from_buckets({}) == (0,) * 10
    with pytest.raises(ValueError, match="not the gateway's"):
        score_bins_from_buckets({0.5: 1.0, math.inf: 2.0})


def _cumulative(values: np.ndarray) -> dict[float, float]:
    return {le: float((values <= le).sum()) for le in (*LATENCY_BUCKETS, math.inf)}


def _std(n: int, total: float, total_sq: float) -> float:
    return math.sqrt((total_sq - total * total / n) / (n - 1))


def test_latency_spread_from_buckets_is_close_to_the_exact_one_and_never_below_it():
    rng = np.random.default_rng(7)
    for median, sigma in ((0.02, 0.8), (0.005, 0.5), (0.2, 0.6), (0.003, 1.5)):
        latencies = rng.lognormal(math.log(median), sigma, 5000)
        total = float(latencies.sum())
        estimated = _std(latencies.size, total, estimate_sumsq(_cumulative(latencies), total))
        exact = float(latencies.std(ddof=1))
        assert exact <= estimated <= 1.5 * exact, (median, sigma, estimated / exact)


def test_latency_estimate_keeps_the_exact_mean_and_handles_the_open_bucket():
    latencies = np.array([0.0002, 0.0003, 0.004, 3.0, 5.0])  # two beyond the last edge (2.5 s)
    total = float(latencies.sum())
    sumsq = estimate_sumsq(_cumulative(latencies), total)
    assert sumsq >= total ** 2 / latencies.size  # a variance that is not negative
    # Values past 2.5 s are placed at their mean (4 s): the tail's own spread is lost.
    assert sumsq == pytest.approx(float((latencies[:3] ** 2).sum()) + 2 * 4.0 ** 2, rel=0.05)
    assert estimate_sumsq({math.inf: 0.0}, 0.0) == 0.0


# ---- windows from canned series --------------------------------------------------------------------
def _canary_answer() -> dict:
    """A canary with a fallback, scraped from two gateway instances, and a shadow."""
    zeros = [0.0] * 11
    return matrix(
        # stable answered 5 + 3 requests on two instances; its second instance restarted once
        series("flightdeck_requests_total", "stable", "1", [0, 5]),
        series("flightdeck_requests_total", "stable", "1", [10, 2, 3], [T0 - 1, T0 + 1, T0 + 2], instance="b:1"),
        *histogram("flightdeck_score_bucket", "stable", "1", zeros, [1, 1, 3, 3, 3, 7, 7, 7, 8, 8, 8], SCORE_LES),
        *histogram("flightdeck_request_latency_seconds_bucket", "stable", "1", [0] * 13, [8] * 13,
                   [*(str(b) for b in LATENCY_BUCKETS), "+Inf"]),
        series("flightdeck_request_latency_seconds_sum", "stable", "1", [0.0, 0.002]),
        # canary: 4 own answers, 2 failures answered by the fallback (stable's version 1)
        series("flightdeck_requests_total", "canary", "2", [0, 4]),
        series("flightdeck_requests_total", "canary", "1", [2], [T0 + 1]),
        series("flightdeck_errors_total", "canary", "2", [2], [T0 + 1]),
        series("flightdeck_fallbacks_total", "canary", "2", [2], [T0 + 1]),
        *histogram("flightdeck_score_bucket", "canary", "2", zeros, [0, 0, 0, 0, 0, 1, 2, 3, 4, 4, 4], SCORE_LES),
        *histogram("flightdeck_score_bucket", "canary", "1", zeros, [2] * 11, SCORE_LES),
        # shadow: 10 mirrored requests, 1 failed, 3 disagreements
        series("flightdeck_shadow_requests_total", "dark", "3", [0, 10]),
        series("flightdeck_errors_total", "dark", "3", [1], [T0 + 1]),
        series("flightdeck_shadow_disagreements_total", "dark", "3", [3], [T0 + 1]),
    )


def test_live_windows_from_canned_series():
    live = windows_from_series(parse_query_response(_canary_answer()), T0, "live")
    assert set(live) == {("stable", "1"), ("canary", "2"), ("canary", "1")}
    stable = live[("stable", "1")]
    assert (stable.requests, stable.errors, stable.rows) == (8, 0, 8)
    assert stable.score_bins == (1, 0, 2, 0, 0, 4, 0, 0, 1, 0)
    assert stable.latency_sum == pytest.approx(0.002)
    # Every latency in the first bucket [0, 0.5 ms], spread evenly: variance (0.5 ms)²/12.
    assert stable.latency_sumsq == pytest.approx(8 * ((0.0005 ** 2) / 12 + 0.00025 ** 2))
    # The failure is counted under the canary's own version, the fallback's answer under version 1.
    assert (live[("canary", "2")].requests, live[("canary", "2")].errors) == (4, 2)
    assert (live[("canary", "1")].requests, live[("canary", "1")].errors) == (2, 0)
    canary = by_variant(live)["canary"]
    assert (canary.requests, canary.errors, canary.rows) == (6, 2, 6)


def test_shadow_windows_from_canned_series():
    shadow = windows_from_series(parse_query_response(_canary_answer()), T0, "shadow")
    assert shadow == {("dark", "3"): VariantWindow(requests=10, errors=1, shadow_rows=9, shadow_disagreements=3)}


def test_failures_no_fallback_answered_count_as_requests():
    answer = matrix(series("flightdeck_requests_total", "flaky", "2", [0, 7]),
                    series("flightdeck_errors_total", "flaky", "2", [0, 3]))
    window = windows_from_series(parse_query_response(answer), T0)[("flaky", "2")]
    assert (window.requests, window.errors) == (10, 3)


def test_series_that_did_not_move_in_the_window_give_no_window():
    answer = matrix(series("flightdeck_requests_total", "stable", "1", [5, 5, 5]))
    assert windows_from_series(parse_query_response(answer), T0) == {}


def test_the_query_reads_every_metric_of_the_endpoint_over_the_window_and_the_lookback():
    source = PrometheusSource("http://prom:9090/", 'cre"dit', selector='job="gw",')
    query = source.query(now=T0 + 60, since_epoch=T0)
    assert query.startswith('{__name__=~"flightdeck_requests_total|') and query.endswith("}[360000ms]")
    assert 'endpoint="cre\\"dit"' in query and ',job="gw"}' in query


# ---- sources over real sockets -------------------------------------------------------------------
@pytest.fixture
def canned_server():
    """A loopback HTTP server answering GETs from `routes`: path (without query) -> (status, body)."""
    routes: dict[str, tuple[int, str]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            path, _, query = self.path.partition("?")
            status, body = routes.get(f"{path}?{query}", routes.get(path, (404, "not found")))
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", routes
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("kind, name", [("gateway", "the gateway"), ("prometheus", "Prometheus")])
def test_an_unreachable_source_is_a_transient_typed_error_naming_the_url_and_the_fix(kind, name):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    source = make_source(kind, url, "credit", timeout=2)
    with pytest.raises(MetricSourceError) as caught:
        source.windows(WindowStart(3, T0))
    message = str(caught.value)
    assert url in message and f"{name} is unreachable" in message and "Fix: start" in message
    assert caught.value.transient


def test_prometheus_answering_garbage_or_an_error_is_a_typed_error(canned_server):
    url, routes = canned_server
    source = PrometheusSource(url, "credit")
    routes["/api/v1/query"] = (200, "<html>not prometheus</html>")
    with pytest.raises(MetricSourceError, match="not Prometheus's API JSON") as caught:
        source.windows(WindowStart(3, T0))
    assert not caught.value.transient
    routes["/api/v1/query"] = (400, json.dumps({"status": "error", "errorType": "bad_data", "error": "bad"}))
    with pytest.raises(MetricSourceError, match="refused the query \\(bad_data: bad\\)"):
        source.windows(WindowStart(3, T0))
    routes["/api/v1/query"] = (200, json.dumps(matrix()))
    assert source.windows(WindowStart(3, T0)) == {}  # no data yet: empty, not an error


def _stats_item(role: str, variant: str, version: str, requests: int, rows: int, disagreements: int = 0) -> dict:
    bins = [0] * 10
    bins[3] = rows
    return {"endpoint": "credit", "role": role, "variant": variant, "model_version": version, "requests": requests,
            "errors": 1, "rows": rows, "latency_sum": 0.5, "latency_sumsq": 0.1, "score_bins": bins,
            "disagreements": disagreements}


def test_gateway_stats_become_windows_per_role(canned_server):
    url, routes = canned_server
    routes["/stats/credit?since_route_version=3&role=live"] = (200, json.dumps(
        {"variants": [_stats_item("live", "stable", "1", 9, 9), _stats_item("live", "canary", "2", 4, 4)]}))
    routes["/stats/credit?since_route_version=3&role=shadow"] = (200, json.dumps(
        {"variants": [_stats_item("shadow", "dark", "3", 5, 4, disagreements=2)]}))
    source = GatewayStatsSource(url, "credit")
    live = source.windows(WindowStart(3, T0))
    assert set(live) == {("stable", "1"), ("canary", "2")} and live[("stable", "1")].rows == 9
    shadow = source.windows(WindowStart(3, T0), role="shadow")
    assert shadow[("dark", "3")].shadow_rows == 4 and shadow[("dark", "3")].shadow_disagreements == 2
    routes["/stats/credit?since_route_version=4&role=live"] = (200, json.dumps({"variants": []}))
    assert source.windows(WindowStart(4, T0)) == {}  # nothing since route version 4: empty, not an error


def test_gateway_answering_garbage_is_a_typed_error(canned_server):
    url, routes = canned_server
    source = GatewayStatsSource(url, "credit")
    routes["/stats/credit"] = (200, "<html>a proxy page</html>")
    with pytest.raises(MetricSourceError, match="not the gateway's stats"):
        source.windows(WindowStart(1, T0))
    routes["/stats/credit"] = (200, json.dumps({"variants": [{"variant": "a", "model_version": "1"}]}))
    with pytest.raises(MetricSourceError, match="malformed stats entry"):
        source.windows(WindowStart(1, T0))
    routes["/stats/credit"] = (503, json.dumps({"error": "not ready"}))
    with pytest.raises(MetricSourceError, match="gateway answered 503: not ready") as caught:
        source.windows(WindowStart(1, T0))
    assert caught.value.transient


# ---- configuration ------------------------------------------------------------------------------
def test_config_is_json_safe_and_rebuilds_the_source():
    for source in (make_source("gateway", "http://gw:8000", "credit"),
                   make_source("prometheus", "http://prom:9090", "credit", timeout=3, selector='job="gw"')):
        config = json.loads(json.dumps(source.config()))
        again = make_source(**config)
        assert type(again) is type(source) and again.config() == config
    since = WindowStart.now(7)
    assert WindowStart(**json.loads(json.dumps(since.to_dict()))) == since


@pytest.mark.parametrize("kwargs, culprit", [
    ({"kind": "graphite", "url": "http://x", "endpoint": "e"}, "kind"),
    ({"kind": "gateway", "url": "", "endpoint": "e"}, "url"),
    ({"kind": "gateway", "url": "http://x", "endpoint": ""}, "endpoint"),
    ({"kind": "gateway", "url": "http://x", "endpoint": "e", "selector": "a"}, "options"),
    ({"kind": "prometheus", "url": "http://x", "endpoint": "e", "step": 5}, "options"),
])
def test_bad_config_is_a_config_error(kwargs, culprit):
    with pytest.raises(ConfigError) as caught:
        make_source(**kwargs)
    assert caught.value.name == culprit


def test_an_unknown_role_is_a_config_error():
    with pytest.raises(ConfigError, match="role"):
        windows_from_series([], T0, role="dark")  # type: ignore[arg-type]


def test_merge_adds_every_count():
    a = VariantWindow(requests=2, errors=1, latency_sum=0.5, rows=2, score_bins=(1,) * 2 + (0,) * 8)
    b = VariantWindow(requests=3, rows=1, score_bins=(0,) * 9 + (1,), shadow_rows=4, shadow_disagreements=1)
    assert merge(a, b) == VariantWindow(requests=5, errors=1, latency_sum=0.5, rows=3,
                                        score_bins=(1, 1) + (0,) * 7 + (1,), shadow_rows=4, shadow_disagreements=1)
