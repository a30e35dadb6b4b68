"""The Models read model against a real MLflow registry (a temporary SQLite store)."""

from __future__ import annotations

import json

from flightdeck.cockpit.models import read_models
from flightdeck.delivery.release import AUDIT_TAG
from flightdeck.golden import PARITY_METRIC
from flightdeck.registry import Registry


def test_versions_show_aliases_parity_releases_and_every_surface_that_runs_them(tmp_path):
    registry = Registry(f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts"), "cockpit-test")
    client = registry.client
    client.create_registered_model("credit")
    for key in ("1", "2", "3"):
        run_id = registry.log_run(f"k{key}", {"seed": key}, {PARITY_METRIC: float(key) * 1e-7}, {}, run_name=key)
        client.create_model_version("credit", str(tmp_path / key), run_id=run_id)
    client.set_registered_model_alias("credit", "champion", "2")
    client.set_registered_model_alias("credit", "challenger", "3")
    record = {"run_id": "manual__x", "outcome": "rolled_back", "strategy": "canary", "at": "2026-12-01T10:00:00Z"}
    client.set_model_version_tag("credit", "3", f"{AUDIT_TAG}.manual__x", json.dumps(record))
    routes = {"endpoints": {"default": {"policy": "canary", "weights": {"stable": 95, "canary": 5},
                                        "variants": {"stable": {"alias": "champion"}, "canary": {"version": "3"}}}}}
    channels = tmp_path / "edge" / "credit" / "channels"
    channels.mkdir(parents=True)
    (channels / "stable.json").write_text(json.dumps({"body": json.dumps({"bundle_id": "1-onnx_int8"})}))

    [model] = read_models(registry, routes_document=routes, default_model="credit",
                          batch_champion={"model": "credit", "version": "2", "ds": "2026-01-07"},
                          edge_store=tmp_path / "edge",
                          lambda_aliases=[{"model": "credit", "function": "scorer", "alias": "live",
                                           "weights": {"3": 0.1}}])
    assert model.name == "credit" and model.aliases == {"champion": "2", "challenger": "3"}
    by_version = {v.version: v for v in model.versions}
    assert list(by_version) == ["3", "2", "1"]  # newest first
    assert by_version["2"].aliases == ["champion"] and by_version["2"].parity == 2e-7
    assert by_version["2"].surfaces == ["gateway default/stable (95 %)", "batch scoring (latest day 2026-01-07)"]
    assert by_version["3"].surfaces == [
        "gateway default/canary (5 %)",
        "lambda scorer:live (10 %, as the last serverless_package run deployed it)"]
    assert by_version["1"].surfaces == ["edge channel stable (1-onnx_int8)"]
    assert by_version["3"].releases == [record]
