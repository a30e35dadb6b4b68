"""Deployments, models, batch and experiments read models, and the pages' HTML."""

from __future__ import annotations

import json

import pytest

from flightdeck.cockpit import render
from flightdeck.cockpit.deployments import endpoint_view, read_deployments
from flightdeck.cockpit.models import edge_surfaces, gateway_surfaces
from flightdeck.cockpit.reports import (
    batch_champion,
    read_experiments,
    read_scored_days,
    report_file,
)

CANARY = {"policy": "canary", "variants": {"stable": {"alias": "champion"}, "canary": {"version": "7"}},
          "weights": {"stable": 90, "canary": 10}, "shadow": {"variant": "canary", "percent": 5}}


def stats_row(variant: str, version: str, requests: int, errors: int, latency_s: float) -> dict:
    return {"endpoint": "default", "role": "live", "variant": variant, "model_version": version,
            "requests": requests, "errors": errors, "latency_sum": requests * latency_s}


def test_an_endpoint_joins_its_route_spec_with_the_running_sums():
    view = endpoint_view("default", CANARY, 12, [stats_row("stable", "6", 900, 9, 0.010),
                                                 stats_row("canary", "7", 100, 3, 0.020)])
    stable, canary = view.variants
    assert (stable.weight, canary.weight) == (90.0, 10.0)
    assert (stable.live_share, canary.live_share) == (90.0, 10.0)
    assert stable.reference == "alias champion" and stable.served_version == "6"
    assert canary.error_rate == pytest.approx(0.03) and canary.latency_ms == pytest.approx(20.0)
    assert view.shadow == "canary (5 % mirrored)" and view.route_version == 12


def test_blue_green_weights_follow_the_active_colour_and_no_traffic_shows_no_rates():
    spec = {"policy": "blue_green", "active": "green", "variants": {"blue": {"version": "1"}, "green": {"version": "2"}}}
    view = endpoint_view("bg", spec, 3, [])
    assert [(v.name, v.weight, v.live_share, v.error_rate) for v in view.variants] == [
        ("blue", 0.0, None, None), ("green", 100.0, None, None)]


class GatewayStub:
    """The three GET calls of GatewayClient the Deployments page makes, answering as the gateway does."""

    def routes(self):
        return {"version": 4, "author": "ci", "document": {"endpoints": {"default": CANARY}}}

    def stats(self, endpoint, since_route_version=0, role="live"):
        assert (endpoint, since_route_version) == ("default", 4)  # sums since the table in force
        return [stats_row("stable", "6", 10, 0, 0.01)]

    def history(self, limit=50):
        old = {"endpoints": {"default": {"policy": "single", "variants": {"stable": {"alias": "champion"}}}}}
        return [{"version": 4, "author": "release-bot", "created_at": "2026-12-01T10:00:00", "comment": "step 1",
                 "old_document": old, "new_document": {"endpoints": {"default": CANARY}}}]


def test_deployments_read_the_table_in_force_and_the_history_with_what_changed():
    deployments = read_deployments(GatewayStub())
    assert deployments.route_version == 4 and [e.name for e in deployments.endpoints] == ["default"]
    change = deployments.history[0]
    assert (change.author, change.changed, change.comment) == ("release-bot", ["default"], "step 1")
    html = render.page("deployments", "Deployments", "deployments", d=deployments, base="/cockpit",
                       default_model="credit")
    assert 'data-endpoint="default"' in html and "release-bot" in html and "<svg" in html


def test_pages_escape_what_the_stores_hold():
    spec = {"policy": "single", "variants": {"<script>alert(1)</script>": {"version": "1"}}}
    deployments = read_deployments(type("G", (GatewayStub,), {
        "routes": lambda self: {"version": 4, "document": {"endpoints": {"default": spec}}},
        "history": lambda self, limit=50: []})())
    html = render.page("deployments", "Deployments", "deployments", d=deployments, base="/cockpit",
                       default_model="credit")
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_gateway_surfaces_resolve_aliases_and_name_the_share():
    document = {"endpoints": {"default": CANARY, "other": {"policy": "single",
                                                           "variants": {"x": {"model": "else", "version": "1"}}}}}
    surfaces = gateway_surfaces(document, "credit", {"champion": "6"}, default_model="credit")
    assert surfaces == {"6": ["gateway default/stable (90 %)"], "7": ["gateway default/canary (10 %)"]}


def test_edge_surfaces_read_channel_pointers_and_the_bundles_cohort(tmp_path):
    model = tmp_path / "credit"
    (model / "channels").mkdir(parents=True)
    (model / "bundles" / "7-tflite_int8").mkdir(parents=True)
    body = json.dumps({"bundle_id": "7-tflite_int8", "channel": "stable", "model_name": "credit"})
    (model / "channels" / "stable.json").write_text(json.dumps({"body": body, "signature": "00"}))
    (model / "bundles" / "7-tflite_int8" / "manifest.json").write_text(
        json.dumps({"model_version": "7", "rollout_percent": 10.0}))
    assert edge_surfaces(tmp_path, "credit") == {"7": ["edge channel stable (7-tflite_int8, 10 % cohort)"]}
    assert edge_surfaces(tmp_path, "missing") == {}


def write_day(reports, ds, version, drifted):
    folder = reports / f"ds={ds}"
    folder.mkdir(parents=True)
    (folder / "index.html").write_text("<html>report</html>")
    (folder / "report.json").write_text(json.dumps({
        "ds": ds, "model_name": "credit", "model_version": version,
        "drift": {"n_rows": 5000, "drifted_features": drifted, "score_drifted": False, "alert": bool(drifted)},
        "volume": {"rows": 5000, "alert": False}}))


def test_scored_days_newest_first_with_their_verdicts_and_the_batch_champion(tmp_path):
    write_day(tmp_path, "2026-01-01", "3", [])
    write_day(tmp_path, "2026-01-02", "4", ["income", "age"])
    (tmp_path / "ds=2026-01-03").mkdir()  # a day being written: no report.json yet
    days = read_scored_days(tmp_path)
    assert [(d.ds, d.version, d.alert, d.drifted_features, d.rows) for d in days] == [
        ("2026-01-02", "4", True, ["income", "age"], 5000), ("2026-01-01", "3", False, [], 5000)]
    assert days[0].report == "ds=2026-01-02/index.html"
    assert batch_champion(days) == {"model": "credit", "version": "4", "ds": "2026-01-02"}


def test_experiments_and_shadow_evaluations_show_their_latest_decision(tmp_path):
    for ds, action in (("2026-01-01", "keep_running"), ("2026-01-02", "ship")):
        folder = tmp_path / "experiments" / "credit_ab" / f"ds={ds}"
        folder.mkdir(parents=True)
        (folder / "report.json").write_text(json.dumps({"decision": {"action": action, "status": "decided",
                                                                     "reasons": [f"reason {ds}"]}}))
    shadow = tmp_path / "shadow" / "default" / "ds=2026-01-02"
    shadow.mkdir(parents=True)
    (shadow / "report.json").write_text(json.dumps({"recommendation": "keep_shadowing", "reasons": ["few rows"]}))
    views = read_experiments(tmp_path)
    assert [(v.name, v.kind, v.ds, v.action, v.reasons) for v in views] == [
        ("credit_ab", "experiment", "2026-01-02", "ship", ["reason 2026-01-02"]),
        ("default", "shadow", "2026-01-02", "keep_shadowing", ["few rows"])]
    assert views[0].days == ["2026-01-02", "2026-01-01"]


def test_report_files_stay_inside_the_reports_folder(tmp_path):
    write_day(tmp_path / "reports", "2026-01-01", "3", [])
    (tmp_path / "secret.txt").write_text("no")
    assert report_file(tmp_path / "reports", "ds=2026-01-01/index.html").read_text() == "<html>report</html>"
    for bad in ("../secret.txt", "/etc/passwd", "ds=2026-01-01/../../secret.txt"):
        with pytest.raises(ValueError, match="outside the reports folder"):
            report_file(tmp_path / "reports", bad)
    with pytest.raises(FileNotFoundError):
        report_file(tmp_path / "reports", "ds=2026-01-09/index.html")
