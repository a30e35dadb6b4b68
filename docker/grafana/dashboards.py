"""Grafana dashboards as code (grafana-foundation-sdk): serving, releases, streaming and batch.

    python docker/grafana/dashboards.py          # writes docker/grafana/dashboards/*.json
    python docker/grafana/dashboards.py --check  # exits 1 when a committed file differs

Compose provisions the written files (docker/grafana/provisioning/). tests/static/test_monitoring.py
checks that the committed JSON is this script's output; tests/integration/monitoring runs every
panel's query against a Prometheus scraping a real gateway, stream scorer and Dask scheduler.
Queries use the recording rules of docker/prometheus/rules/ where one exists, so a panel and the
alert built on it show the same number.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BigValueGraphMode,
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    TooltipDisplayMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

OUT = Path(__file__).resolve().with_name("dashboards")
DATASOURCE_UID = "flightdeck-prometheus"  # provisioning/datasources/prometheus.yaml
DATASOURCE = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
RATE = "$__rate_interval"
EP = 'endpoint=~"$endpoint"'
EPV = 'endpoint=~"$endpoint", variant=~"$variant"'


def query(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)


def queries(*pairs: tuple[str, str]) -> list[prometheus.Dataquery]:
    return [query(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(pairs)]


def series(title: str, targets: Iterable[prometheus.Dataquery], unit: str = "short", description: str = "",
           width: int = 12, height: int = 8) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).datasource(DATASOURCE).unit(unit).span(width).height(height)
             .targets(list(targets))
             .legend(cb.VizLegendOptions().show_legend(True).display_mode(LegendDisplayMode.LIST)
                     .placement(LegendPlacement.BOTTOM))
             .tooltip(cb.VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING)))
    return panel.description(description) if description else panel


def single(title: str, target: prometheus.Dataquery, unit: str = "short", description: str = "",
           width: int = 6) -> stat.Panel:
    panel = (stat.Panel().title(title).datasource(DATASOURCE).unit(unit).span(width).height(4).with_target(target)
             .graph_mode(BigValueGraphMode.AREA)
             .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    return panel.description(description) if description else panel


def label_variable(name: str, label: str, source: str) -> db.QueryVariable:
    """A multi-value variable over one label of `source`, "All" matching every value."""
    return (db.QueryVariable(name).label(label).datasource(DATASOURCE)
            .query(f"label_values({source}, {name})").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC).multi(True).include_all(True).all_value(".*")
            .current(VariableOption(selected=True, text="All", value="$__all")))


def base(uid: str, title: str, description: str, tags: list[str]) -> db.Dashboard:
    return (db.Dashboard(title).uid(uid).description(description).tags(["flightdeck", *tags])
            .timezone("utc").time("now-1h", "now").refresh("30s").tooltip(DashboardCursorSync.CROSSHAIR)
            .editable())


def serving() -> db.Dashboard:
    """Per endpoint and variant: traffic, errors, latency, scores, cache, refusals, prediction log."""
    return (
        base("flightdeck-serving", "flightdeck / serving",
             "The gateway per endpoint and variant (flightdeck serve, job gateway).", ["serving"])
        .with_variable(label_variable("endpoint", "endpoint", "flightdeck_requests_total"))
        .with_variable(label_variable("variant", "variant", 'flightdeck_requests_total{endpoint=~"$endpoint"}'))
        .with_row(db.Row("Traffic and errors"))
        .with_panel(series("Requests answered / s", queries(
            (f"sum by (endpoint, variant, model_version) (rate(flightdeck_requests_total{{{EPV}}}[{RATE}]))",
             "{{endpoint}} / {{variant}} v{{model_version}}")), "reqps",
            "Answered requests by the variant that answered and the model version that scored."))
        .with_panel(series("Error ratio (5 m, as the gates count)", queries(
            (f"endpoint_variant:flightdeck_error_ratio:rate5m{{{EPV}}}", "{{endpoint}} / {{variant}}")),
            "percentunit", "Failed calls (fallback answers included) over served requests; recording rule."))
        .with_panel(series("Fallback answers / s", queries(
            (f"sum by (endpoint, variant, model_version) (rate(flightdeck_fallbacks_total{{{EPV}}}[{RATE}]))",
             "{{endpoint}} / {{variant}} answered by v{{model_version}}")), "reqps",
            "Requests a fallback answered, by the primary variant that failed."))
        .with_panel(series("Refused requests / s (4xx)", queries(
            (f"sum by (endpoint, status) (rate(flightdeck_rejected_requests_total{{{EP}}}[{RATE}]))",
             "{{endpoint}} {{status}}")), "reqps", "400 bad JSON, 404 unknown, 413 too big, 422 bad columns."))
        .with_row(db.Row("Latency"))
        .with_panel(series("Latency p50 / p99", queries(
            ("histogram_quantile(0.5, sum by (endpoint, variant, le) "
             f"(rate(flightdeck_request_latency_seconds_bucket{{{EPV}}}[{RATE}])))", "p50 {{endpoint}} / {{variant}}"),
            (f"endpoint_variant:flightdeck_request_latency_seconds:p99_rate5m{{{EPV}}}",
             "p99 {{endpoint}} / {{variant}}")), "s", "Gateway time per answered request."))
        .with_panel(series("Mean latency (5 m)", queries(
            (f"endpoint_variant:flightdeck_request_latency_seconds:mean_rate5m{{{EPV}}}",
             "{{endpoint}} / {{variant}}")), "s", "The mean the latency gate compares (margin 10 ms)."))
        .with_row(db.Row("Scores and cache"))
        .with_panel(series("Mean score", queries(
            (f"sum by (endpoint, variant, model_version) (rate(flightdeck_score_sum{{{EPV}}}[{RATE}])) / "
             f"sum by (endpoint, variant, model_version) (rate(flightdeck_score_count{{{EPV}}}[{RATE}]))",
             "{{endpoint}} / {{variant}} v{{model_version}}")), "percentunit",
            "A moving mean score is the first sign of drift in live traffic."))
        .with_panel(series("Score distribution (rows / s per bin)", queries(
            (f"sum by (le) (rate(flightdeck_score_bucket{{{EPV}}}[{RATE}]))", "≤ {{le}}")), "short",
            "Cumulative buckets of the ten score bins the gates' PSI uses."))
        .with_panel(series("Cache hit ratio", queries(
            (f"sum by (endpoint) (rate(flightdeck_cache_hits_total{{{EP}}}[{RATE}])) / "
             f"(sum by (endpoint) (rate(flightdeck_cache_hits_total{{{EP}}}[{RATE}])) + "
             f"sum by (endpoint) (rate(flightdeck_cache_misses_total{{{EP}}}[{RATE}])))", "{{endpoint}}")),
            "percentunit", "Answers served from the response cache."))
        .with_row(db.Row("Prediction log"))
        .with_panel(series("Prediction-log rows / s", queries(
            ("sum by (job) (deriv(flightdeck_prediction_log_written[5m]))", "written"),
            ("sum by (job) (deriv(flightdeck_prediction_log_dropped[5m]))", "dropped"),
            ("sum by (job) (deriv(flightdeck_prediction_log_failed[5m]))", "failed")), "short",
            "Rows the background writer stored, dropped (queue full) and lost (database refused)."))
        .with_panel(series("Prediction-log drops and failures (10 m)", queries(
            ("job:flightdeck_prediction_log_dropped:delta10m", "dropped"),
            ("job:flightdeck_prediction_log_failed:delta10m", "failed")), "short",
            "What the FlightdeckPredictionLog* alerts fire on."))
    )


def releases() -> db.Dashboard:
    """A rollout as the gates see it: traffic split, candidate against baseline, shadow, route versions."""
    canary = 'endpoint=~"$endpoint", variant="canary"'
    stable = 'endpoint=~"$endpoint", variant="stable"'
    return (
        base("flightdeck-releases", "flightdeck / releases",
             "Canary, blue-green and shadow rollouts on the gateway: what promote_canary's gates weigh.",
             ["releases"])
        .with_variable(label_variable("endpoint", "endpoint", "flightdeck_requests_total"))
        .with_row(db.Row("Rollout"))
        .with_panel(single("Route table version", query("max(flightdeck_route_version)", "version"),
                           description="Bumps on every PUT /admin/routes (a weight step, a cut-over, a rollback)."))
        .with_panel(single("Alerts firing or pending", query('count(ALERTS{alertname=~"Flightdeck.*"})', "alerts"),
                           description="Every flightdeck alert Prometheus holds right now."))
        .with_panel(single("Forced requests / s", query(
            f"sum(rate(flightdeck_forced_requests_total{{{EP}}}[{RATE}]))", "forced"), "reqps",
            "Requests an admin pinned to a variant: left out of the gates' evidence."))
        .with_panel(single("Shadow requests / s", query(
            f"sum(rate(flightdeck_shadow_requests_total{{{EP}}}[{RATE}]))", "mirrored"), "reqps"))
        .with_panel(series("Traffic share per variant (5 m)", queries(
            (f"endpoint_variant:flightdeck_requests:rate5m{{{EP}}} / ignoring (variant) group_left "
             f"sum by (endpoint) (endpoint_variant:flightdeck_requests:rate5m{{{EP}}})", "{{endpoint}} / {{variant}}")),
            "percentunit", "The weights as served: follows each canary step."))
        .with_panel(series("Route table version", queries(("max by (job) (flightdeck_route_version)", "{{job}}")),
                           "short"))
        .with_row(db.Row("Candidate against baseline (variants canary / stable)"))
        .with_panel(series("Error ratio: canary and stable (5 m)", queries(
            (f"endpoint_variant:flightdeck_error_ratio:rate5m{{{canary}}}", "canary {{endpoint}}"),
            (f"endpoint_variant:flightdeck_error_ratio:rate5m{{{stable}}}", "stable {{endpoint}}")), "percentunit"))
        .with_panel(series("Error ratio above baseline (alert at 0.5 %)", queries(
            (f"endpoint_variant:flightdeck_error_ratio:rate5m{{{canary}}} - ignoring (variant) "
             f"endpoint_variant:flightdeck_error_ratio:rate5m{{{stable}}}", "{{endpoint}}")), "percentunit"))
        .with_panel(series("Mean latency: canary and stable (5 m)", queries(
            (f"endpoint_variant:flightdeck_request_latency_seconds:mean_rate5m{{{canary}}}", "canary {{endpoint}}"),
            (f"endpoint_variant:flightdeck_request_latency_seconds:mean_rate5m{{{stable}}}", "stable {{endpoint}}")),
            "s"))
        .with_panel(series("Mean score per model version", queries(
            (f"sum by (model_version) (rate(flightdeck_score_sum{{{EP}}}[{RATE}])) / "
             f"sum by (model_version) (rate(flightdeck_score_count{{{EP}}}[{RATE}]))", "v{{model_version}}")),
            "percentunit", "Candidate and baseline scores should agree; the gates test the bins' PSI."))
        .with_row(db.Row("Error budget and shadow"))
        .with_panel(series("Error ratio per endpoint, 5 m and 1 h (fast burn at 7.2 %)", queries(
            (f"endpoint:flightdeck_error_ratio:rate5m{{{EP}}}", "5m {{endpoint}}"),
            (f"endpoint:flightdeck_error_ratio:rate1h{{{EP}}}", "1h {{endpoint}}")), "percentunit"))
        .with_panel(series("Shadow disagreement ratio", queries(
            # A shadow that never disagreed has no disagreement series yet: it reads as zero.
            (f"(sum by (endpoint, variant) (rate(flightdeck_shadow_disagreements_total{{{EP}}}[{RATE}])) or "
             f"0 * sum by (endpoint, variant) (rate(flightdeck_shadow_requests_total{{{EP}}}[{RATE}]))) / "
             f"sum by (endpoint, variant) (rate(flightdeck_shadow_requests_total{{{EP}}}[{RATE}]))",
             "{{endpoint}} / {{variant}}")), "percentunit",
            "Mirrored rows whose decision differs from the live answer (gate: 5 %)."))
    )


def streaming_and_batch() -> db.Dashboard:
    """The stream scorer (throughput, lag, latency, dead letters, late events, drift) and Dask."""
    return (
        base("flightdeck-streaming-batch", "flightdeck / streaming and batch",
             "flightdeck stream (job stream-scorer) and the Dask scheduler batch_score runs on (job dask-scheduler).",
             ["streaming", "batch"])
        .with_variable(label_variable("endpoint", "endpoint", "flightdeck_stream_events_total"))
        .with_row(db.Row("Stream scorer"))
        .with_panel(series("Events scored / s", queries(
            (f"sum by (endpoint, variant, model_version) (rate(flightdeck_stream_events_total{{{EP}}}[{RATE}]))",
             "{{endpoint}} / {{variant}} v{{model_version}}"),
            (f"flightdeck_stream_throughput_events_per_second{{{EP}}}", "last batch {{endpoint}}")), "short"))
        .with_panel(series("Consumer lag (records)", queries(
            (f"max by (endpoint) (flightdeck_stream_consumer_lag{{{EP}}})", "{{endpoint}}")), "short",
            "Records in the source not yet processed (alert: over 10,000 for 10 m)."))
        .with_panel(series("Event to result latency", queries(
            ("histogram_quantile(0.5, sum by (endpoint, le) "
             f"(rate(flightdeck_stream_event_to_result_seconds_bucket{{{EP}}}[{RATE}])))", "p50 {{endpoint}}"),
            (f"endpoint:flightdeck_stream_event_to_result_seconds:p99_rate5m{{{EP}}}", "p99 {{endpoint}}")), "s",
            "Broker append to committed result."))
        .with_panel(series("Batches committed / s", queries(
            (f"sum by (endpoint) (rate(flightdeck_stream_batches_total{{{EP}}}[{RATE}]))", "{{endpoint}}")), "short"))
        .with_row(db.Row("Stream data quality"))
        .with_panel(series("Dead letters / s and ratio (5 m)", queries(
            (f"sum by (endpoint) (rate(flightdeck_stream_dead_letters_total{{{EP}}}[{RATE}]))", "per s {{endpoint}}"),
            (f"endpoint:flightdeck_stream_dead_letter_ratio:rate5m{{{EP}}}", "ratio {{endpoint}}")), "short",
            "Events that could not be parsed, scored or stored; each carries its reason."))
        .with_panel(series("Late and clamped events / s", queries(
            (f"sum by (endpoint, window) (rate(flightdeck_stream_late_events_total{{{EP}}}[{RATE}]))",
             "late {{endpoint}} {{window}}"),
            (f"sum by (endpoint, window) (rate(flightdeck_stream_clamped_events_total{{{EP}}}[{RATE}]))",
             "clamped {{endpoint}} {{window}}")), "short",
            "Late: after their window closed. Clamped: event time too far ahead of arrival."))
        .with_panel(series("Drift alerts published (1 h)", queries(
            (f"sum by (endpoint, kind) (increase(flightdeck_stream_drift_alerts_total{{{EP}}}[1h]))",
             "{{endpoint}} {{kind}}")), "short",
            "Windows whose score or feature PSI crossed the threshold; each starts stream_drift_investigation."))
        .with_row(db.Row("Batch (Dask)"))
        .with_panel(series("Dask workers by state", queries(
            ("sum by (state) (dask_scheduler_workers)", "{{state}}")), "short"))
        .with_panel(series("Dask tasks by state", queries(
            ("sum by (state) (dask_scheduler_tasks)", "{{state}}")), "short"))
        .with_panel(single("Dask clients", query("sum(dask_scheduler_clients)", "clients"),
                           description="Scoring runs connected to the scheduler."))
        .with_panel(single("Targets up", query(
            'sum(up{job=~"gateway|stream-scorer|dask-scheduler"})', "up"),
            description="Scrape targets answering, out of gateway, stream scorer and Dask scheduler."))
    )


DASHBOARDS = {"serving": serving, "releases": releases, "streaming-batch": streaming_and_batch}


def built(build) -> object:
    """The dashboard model, every panel and row numbered 1, 2, … in layout order (Grafana needs unique ids)."""
    model = build().build()
    for number, panel in enumerate(model.panels, start=1):
        panel.id_val = number
    return model


def render() -> dict[str, str]:
    """{file name: JSON text} of every dashboard."""
    return {f"{name}.json": JSONEncoder(sort_keys=True, indent=2).encode(built(build)) + "\n"
            for name, build in DASHBOARDS.items()}


def main(argv: list[str]) -> int:
    rendered = render()
    if "--check" in argv:
        stale = [name for name, text in rendered.items()
                 if not (OUT / name).is_file() or (OUT / name).read_text() != text]
        for name in stale:
            print(f"{OUT / name} is not the generator's output. Fix: python docker/grafana/dashboards.py",
                  file=sys.stderr)
        return 1 if stale else 0
    OUT.mkdir(exist_ok=True)
    for name, text in rendered.items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}: {len(json.loads(text)['panels'])} panels and rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
