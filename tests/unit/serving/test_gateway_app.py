"""The gateway application in process (Starlette's TestClient runs its lifespan), on a sqlite
store and in-memory models: protocols, policies, shadow, fallback, cache, admin, records.

Real-server behaviour (several uvicorn workers, PostgreSQL, Redis, load) is in
tests/integration/serving/test_gateway_server.py.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from flightdeck import runtime
from flightdeck.config import Settings
from flightdeck.serving import db
from flightdeck.serving.app import create_app
from flightdeck.serving.gateway import Gateway
from flightdeck.serving.models import ModelPool
from flightdeck.serving.predlog_reads import read_predictions
from flightdeck.serving.store import RouteStore
from tests.support.models import FakeRegistry, onnx_model, records, split

TOKEN = "test-admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BLUE_GREEN = {"endpoints": {"credit": {"policy": "blue_green", "active": "blue",
                                       "variants": {"blue": {"version": "1"}, "green": {"version": "2"}}}}}


def expected_scores(version: int, rows: list[dict]) -> np.ndarray:
    return runtime.score(runtime.load_session(onnx_model(version)), pd.DataFrame(rows))


@pytest.fixture
def settings(tmp_path):
    return Settings(home=tmp_path / "home", gateway_database_url=f"sqlite:///{tmp_path / 'gateway.db'}",
                    admin_tokens={"ops": TOKEN}, grpc_port=0, route_poll_seconds=0.05, stats_flush_seconds=0.05,
                    predlog_flush_seconds=0.05, max_batch_rows=50, max_body_bytes=200_000)


@pytest.fixture
def serve(settings):
    """serve(routes, **setting overrides) → a TestClient on a running gateway."""

    @contextmanager
    def start(routes: dict, **overrides):
        config = settings.model_copy(update=overrides)
        db.upgrade(config.gateway_db_url)
        RouteStore(db.engine_for(config.gateway_db_url)).replace(routes, author="test")
        gateway = Gateway(config, ModelPool(FakeRegistry()))
        with TestClient(create_app(config, gateway)) as client:
            client.gateway = gateway
            yield client

    return start


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


# ---- protocols ------------------------------------------------------------------------------
def test_every_mlflow_format_gets_the_model_scores(serve):
    rows = records(4)
    frame = pd.DataFrame(rows)
    bodies = [split(4), {"dataframe_records": rows}, {"instances": rows},
              {"inputs": {c: frame[c].tolist() for c in frame.columns}}]
    with serve(BLUE_GREEN) as client:
        for body in bodies:
            response = client.post("/invocations", json=body)
            assert response.status_code == 200, response.text
            answer = response.json()
            np.testing.assert_allclose(answer["predictions"], expected_scores(1, rows), rtol=0, atol=1e-12)
            assert (answer["variant"], answer["model_version"], answer["route_version"]) == ("blue", "1", 1)
            assert response.headers["x-flightdeck-variant"] == "blue"
        assert client.post("/endpoints/credit/invocations", json=bodies[0]).json()["variant"] == "blue"
        assert client.get("/ping").status_code == 200


def test_open_inference_protocol(serve):
    rows = records(3)
    with serve(BLUE_GREEN) as client:
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2/health/ready").status_code == 200
        assert client.get("/v2/models/credit/ready").json()["ready"] is True
        meta = client.get("/v2/models/credit").json()
        assert meta["versions"] == ["1", "2"]
        inputs = {t["name"]: t["datatype"] for t in meta["inputs"]}
        assert inputs["age"] == "FP64" and "BYTES" in inputs.values()
        tensors = [{"name": name, "datatype": inputs[name], "shape": [3, 1], "data": [r[name] for r in rows]}
                   for name in inputs]
        answer = client.post("/v2/models/credit/infer", json={"id": "req-1", "inputs": tensors}).json()
        assert answer["id"] == "req-1" and answer["model_version"] == "1"
        assert answer["outputs"][0]["shape"] == [3]
        np.testing.assert_allclose(answer["outputs"][0]["data"], expected_scores(1, rows), atol=1e-12)
        # Pinning a version forces a variant: admins only.
        assert client.post("/v2/models/credit/versions/2/infer", json={"inputs": tensors}).status_code == 403
        pinned = client.post("/v2/models/credit/versions/2/infer", json={"inputs": tensors}, headers=AUTH).json()
        np.testing.assert_allclose(pinned["outputs"][0]["data"], expected_scores(2, rows), atol=1e-12)
        assert client.post("/v2/models/credit/versions/9/infer", json={"inputs": tensors},
                           headers=AUTH).status_code == 404
        assert client.get("/v2/models/nope").status_code == 404


def test_websocket_stream_keeps_going_after_a_bad_message(serve):
    rows = records(3)
    with serve(BLUE_GREEN) as client, client.websocket_connect("/stream/credit") as ws:
        ws.send_json(rows[0])
        first = ws.receive_json()
        assert first["variant"] == "blue" and len(first["predictions"]) == 1
        ws.send_text("{not json")
        assert ws.receive_json()["status"] == 400
        ws.send_json({"rows": [{"age": 1}]})
        assert ws.receive_json()["status"] == 422
        ws.send_json({"id": 7, "rows": rows})
        batch = ws.receive_json()
        assert batch["id"] == 7
        np.testing.assert_allclose(batch["predictions"], expected_scores(1, rows), atol=1e-12)
        for hostile in ("unit\u0000id", "u" * 129):
            ws.send_json({"rows": rows, "unit_id": hostile})
            refused = ws.receive_json()
            assert (refused["status"], refused["field"]) == (400, "unit_id") and "128" in refused["error"]
        ws.send_json(rows[0])
        assert ws.receive_json()["variant"] == "blue"  # still open


# ---- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "body", "status", "fragment"), [
    ("/invocations", b"{oops", 400, "not valid JSON"),
    ("/invocations", b'{"dataframe_records": [{"age": 30}]}', 422, "missing column"),
    ("/invocations", b'{"unknown_format": []}', 400, "exactly one of"),
    ("/endpoints/nope/invocations", None, 404, "no endpoint 'nope'"),
    ("/v2/models/credit/infer", b'{"inputs": 3}', 400, "non-empty list"),
    ("/v2/models/credit/infer", b"[]", 400, "must be an object"),
])
def test_bad_requests_get_4xx_naming_the_problem(serve, path, body, status, fragment):
    with serve(BLUE_GREEN) as client:
        response = client.post(path, content=body if body is not None else __import__("orjson").dumps(split(1)))
        assert response.status_code == status, response.text
        assert fragment in response.json()["error"]


def test_wrong_type_names_the_field(serve):
    rows = records(2)
    rows[1]["annual_income"] = "plenty"
    with serve(BLUE_GREEN) as client:
        response = client.post("/invocations", json={"dataframe_records": rows})
        assert response.status_code == 422 and "annual_income" in response.json()["error"]


def test_size_limits_give_413(serve):
    with serve(BLUE_GREEN) as client:
        assert client.post("/invocations", json=split(51)).status_code == 413  # max_batch_rows=50
        big = b'{"inputs": {"age": [' + b",".join([b"1.0"] * 60_000) + b"]}}"
        assert client.post("/invocations", content=big).status_code == 413  # max_body_bytes


# ---- admin --------------------------------------------------------------------------------
def test_admin_needs_the_token(serve):
    with serve(BLUE_GREEN) as client:
        assert client.get("/admin/routes").status_code == 401
        assert client.get("/admin/routes", headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert client.put("/admin/routes", json={"document": BLUE_GREEN}).status_code == 401
        assert client.get("/admin/routes", headers=AUTH).json()["version"] == 1


def test_blue_green_switch_is_instant_versioned_and_audited(serve):
    with serve(BLUE_GREEN) as client:
        switched = {"endpoints": {"credit": {**BLUE_GREEN["endpoints"]["credit"], "active": "green"}}}
        response = client.put("/admin/routes", headers=AUTH,
                              json={"document": switched, "expected_version": 1, "comment": "go green"})
        assert response.status_code == 200 and response.json()["version"] == 2
        answer = client.post("/invocations", json=split(1)).json()
        assert (answer["variant"], answer["model_version"], answer["route_version"]) == ("green", "2", 2)
        stale = client.put("/admin/routes", headers=AUTH, json={"document": BLUE_GREEN, "expected_version": 1})
        assert stale.status_code == 409
        history = client.get("/admin/routes/history", headers=AUTH).json()["history"]
        latest = history[0]
        assert latest["author"] == "ops" and latest["comment"] == "go green"
        assert latest["old_document"]["endpoints"]["credit"]["active"] == "blue"
        assert latest["new_document"]["endpoints"]["credit"]["active"] == "green"


def test_a_table_that_cannot_load_is_refused_before_it_is_stored(serve):
    with serve(BLUE_GREEN) as client:
        typo = {"endpoints": {"credit": {"policy": "single", "variants": {"x": {"version": "42"}}}}}
        response = client.put("/admin/routes", headers=AUTH, json={"document": typo})
        assert response.status_code == 422 and "42" in response.json()["error"]
        invalid = client.put("/admin/routes", headers=AUTH, json={"document": {"endpoints": {}}})
        assert invalid.status_code == 422
        assert client.get("/admin/routes", headers=AUTH).json()["version"] == 1


def test_route_change_made_by_another_worker_is_picked_up(serve, settings):
    with serve(BLUE_GREEN) as client:
        switched = {"endpoints": {"credit": {**BLUE_GREEN["endpoints"]["credit"], "active": "green"}}}
        RouteStore(db.engine_for(settings.gateway_db_url)).replace(switched, author="elsewhere")
        assert wait_for(lambda: client.post("/invocations", json=split(1)).json()["variant"] == "green")


# ---- policies end to end -----------------------------------------------------------------------
def test_shadow_never_changes_or_slows_the_answer(serve, settings):
    rows = records(2)
    shadowed = {"endpoints": {"credit": {
        "policy": "single", "variants": {"live": {"version": "1"},
                                         "candidate": {"version": "2", "faults": {"latency_ms": 400}}},
        "shadow": {"variant": "candidate", "percent": 100}}}}
    with serve(shadowed) as client:
        answers = [client.post("/invocations", json={"dataframe_records": rows}).json() for _ in range(5)]
        # The shadow scores one mirrored request per 0.4 s; had any answer waited for its
        # shadow, all five shadows would be done by now.
        shadow_rows = sum(t.rows for t in client.gateway.stats.snapshot() if t.key.role == "shadow")
        assert shadow_rows < 10
        for answer in answers:
            assert answer["variant"] == "live"
            np.testing.assert_allclose(answer["predictions"], expected_scores(1, rows), atol=1e-12)
        engine = client.gateway.engine
        predictions = sa.table("predictions", sa.column("role"), sa.column("variant"), sa.column("request_id"))

        def logged():
            with engine.connect() as conn:
                return conn.execute(sa.select(predictions.c.role, sa.func.count()).group_by(
                    predictions.c.role)).all()

        assert wait_for(lambda: dict(logged()) == {"live": 10, "shadow": 10})
        assert "flightdeck_shadow_requests_total" in client.get("/metrics").text
        # Live rows keep their input for replay (backtests); shadow rows only point at it.
        logged_inputs = sa.table("predictions", sa.column("role"), sa.column("features"), sa.column("row_index"))
        with engine.connect() as conn:
            features = conn.execute(sa.select(logged_inputs.c.role, logged_inputs.c.features)
                                    .where(logged_inputs.c.row_index == 0)).all()
        assert {json.loads(text) == rows[0] for role, text in features if role == "live"} == {True}
        assert {text for role, text in features if role == "shadow"} == {None}


def test_fallback_engages_on_slow_primary_and_recovers(serve):
    slow = {"endpoints": {"credit": {
        "policy": "blue_green", "active": "primary",
        "variants": {"primary": {"version": "2", "faults": {"latency_ms": 300}}, "safe": {"version": "1"}},
        "fallback": {"variant": "safe", "latency_budget_ms": 30, "failure_threshold": 2, "reset_seconds": 0.5}}}}
    with serve(slow) as client:
        for _ in range(2):  # each waits for the budget, then falls back
            answer = client.post("/invocations", json=split(1)).json()
            assert answer["fallback"] is True and answer["model_version"] == "1" and answer["variant"] == "primary"
        endpoint = client.gateway._routes.endpoints["credit"]
        assert endpoint.breakers["primary"].state == "open"
        assert client.post("/invocations", json=split(1)).json()["fallback"] is True
        errors = 'flightdeck_errors_total{endpoint="credit",model_version="2",variant="primary"} 2.0'
        assert errors in client.get("/metrics").text  # breaker open: the slow primary was not tried again
        healthy = {"endpoints": {"credit": {**slow["endpoints"]["credit"],
                                            "variants": {"primary": {"version": "2"}, "safe": {"version": "1"}}}}}
        assert client.put("/admin/routes", headers=AUTH, json={"document": healthy}).status_code == 200
        answer = client.post("/invocations", json=split(1)).json()
        assert answer["fallback"] is False and answer["model_version"] == "2"
        metrics = client.get("/metrics").text
        assert 'flightdeck_fallbacks_total{endpoint="credit",model_version="2",variant="primary"} 3.0' in metrics


def test_breaker_half_open_trial_closes_it(serve):
    flaky = {"endpoints": {"credit": {
        "policy": "blue_green", "active": "primary",
        "variants": {"primary": {"version": "2", "faults": {"error_rate": 1.0}}, "safe": {"version": "1"}},
        "fallback": {"variant": "safe", "latency_budget_ms": 1000, "failure_threshold": 1, "reset_seconds": 0.2}}}}
    with serve(flaky) as client:
        assert client.post("/invocations", json=split(1)).json()["fallback"] is True
        endpoint = client.gateway._routes.endpoints["credit"]
        assert endpoint.breakers["primary"].state == "open"
        endpoint.variants["primary"].faults = None  # the primary heals
        assert wait_for(lambda: endpoint.breakers["primary"].state == "half_open")
        assert client.post("/invocations", json=split(1)).json()["fallback"] is False
        assert endpoint.breakers["primary"].state == "closed"


def test_failing_variant_without_fallback_is_503(serve):
    broken = {"endpoints": {"credit": {"policy": "single",
                                       "variants": {"x": {"version": "1", "faults": {"error_rate": 1.0}}}}}}
    with serve(broken) as client:
        response = client.post("/invocations", json=split(1))
        assert response.status_code == 503 and "configure a fallback" in response.json()["error"]


@pytest.mark.parametrize("method", ["mean", "vote"])
def test_ensemble(serve, method):
    rows = records(6)
    ensemble = {"endpoints": {"credit": {"policy": "ensemble", "ensemble": {"method": method},
                                         "variants": {"a": {"version": "1"}, "b": {"version": "2"}}}}}
    with serve(ensemble) as client:
        answer = client.post("/invocations", json={"dataframe_records": rows}).json()
    both = np.vstack([expected_scores(1, rows), expected_scores(2, rows)])
    expected = both.mean(axis=0) if method == "mean" else (both >= 0.5).mean(axis=0)
    np.testing.assert_allclose(answer["predictions"], expected, atol=1e-12)
    assert answer["variant"] == "ensemble" and answer["model_version"] == "a:1+b:2"


def test_conditional_routing_by_feature(serve):
    rows = records(8)
    cut = float(np.median([r["annual_income"] for r in rows]))
    conditional = {"endpoints": {"credit": {
        "policy": "conditional", "default": "small",
        "conditions": [{"feature": "annual_income", "op": ">", "value": cut, "variant": "large"}],
        "variants": {"small": {"version": "1"}, "large": {"version": "2"}}}}}
    with serve(conditional) as client:
        answer = client.post("/invocations", json={"dataframe_records": rows}).json()
    large = np.array([r["annual_income"] > cut for r in rows])
    assert answer["row_variants"] == ["large" if x else "small" for x in large]
    expected = np.where(large, expected_scores(2, rows), expected_scores(1, rows))
    np.testing.assert_allclose(answer["predictions"], expected, atol=1e-12)


def test_header_override_and_sticky_ab(serve):
    ab = {"endpoints": {"credit": {"policy": "ab", "weights": {"a": 50, "b": 50}, "salt": "exp",
                                   "variants": {"a": {"version": "1"}, "b": {"version": "2"}}}}}
    with serve(ab) as client:
        seen = {client.post("/invocations", json=split(1), headers={"X-Unit-Id": "user-7"}).json()["variant"]
                for _ in range(10)}
        assert len(seen) == 1
        override = {"X-Unit-Id": "user-7", "X-Flightdeck-Variant": "b"}
        assert client.post("/invocations", json=split(1), headers=override).status_code == 403
        forced = client.post("/invocations", json=split(1), headers={**override, **AUTH}).json()
        assert forced["variant"] == "b"
        assert client.post("/invocations", json=split(1)).status_code == 422  # no unit id


def test_a_forced_request_is_counted_apart_from_the_families_the_gates_read(serve):
    from prometheus_client.parser import text_string_to_metric_families

    def samples(text: str) -> dict[tuple[str, str], float]:
        """(sample name, variant) → value, for the endpoint's samples of the request families."""
        return {(s.name, s.labels.get("variant", "")): s.value for family in text_string_to_metric_families(text)
                for s in family.samples if s.labels.get("endpoint") == "credit"
                and s.name in ("flightdeck_requests_total", "flightdeck_forced_requests_total",
                               "flightdeck_request_latency_seconds_count", "flightdeck_score_count")}

    with serve(BLUE_GREEN) as client:
        assert client.post("/invocations", json=split(1)).json()["variant"] == "blue"
        forced = client.post("/invocations", json=split(3), headers={"X-Flightdeck-Variant": "green", **AUTH})
        assert forced.json()["variant"] == "green"
        counted = samples(client.get("/metrics").text)
    assert counted[("flightdeck_forced_requests_total", "green")] == 1
    assert counted[("flightdeck_requests_total", "blue")] == 1 and counted[("flightdeck_score_count", "blue")] == 1
    # green answered only the forced request: nothing of it in the families a release gate reads
    assert not any(variant == "green" and value for (name, variant), value in counted.items()
                   if name != "flightdeck_forced_requests_total"), counted


# ---- cache, metrics, stats, prediction log, outcomes ----------------------------------------------
def test_cache_hits_and_misses(serve):
    with serve(BLUE_GREEN) as client:
        first = client.post("/invocations", json=split(2)).json()
        second = client.post("/invocations", json=split(2)).json()
        assert (first["cached"], second["cached"]) == (False, True)
        assert first["predictions"] == second["predictions"]
        metrics = client.get("/metrics").text
        assert 'flightdeck_cache_hits_total{endpoint="credit",model_version="1",variant="blue"} 1.0' in metrics
        assert 'flightdeck_cache_misses_total{endpoint="credit",model_version="1",variant="blue"} 1.0' in metrics


def test_a_variant_with_injected_faults_bypasses_the_cache(serve):
    failing = {"endpoints": {"credit": {"policy": "single",
                                        "variants": {"drill": {"version": "1", "faults": {"error_rate": 1.0}}}}}}
    with serve(failing) as client:
        statuses = [client.post("/invocations", json=split(2)).status_code for _ in range(3)]
        assert statuses == [503, 503, 503]  # never a cached answer that skips the drill
        stats = client.gateway.stats.snapshot()
        assert [(t.requests, t.errors) for t in stats] == [(3, 3)]  # failures count in the gates' sums


def test_metrics_stats_log_and_outcomes(serve):
    with serve(BLUE_GREEN, cache_backend="off") as client:
        ids = [client.post("/invocations", json=split(2)).json()["request_id"] for _ in range(3)]
        client.post("/invocations", json={"dataframe_records": [{"age": 1}]})  # a 422
        metrics = client.get("/metrics").text
        assert 'flightdeck_requests_total{endpoint="credit",model_version="1",variant="blue"} 3.0' in metrics
        assert 'flightdeck_rejected_requests_total{endpoint="credit",status="422"} 1.0' in metrics
        assert 'flightdeck_score_count{endpoint="credit",model_version="1",variant="blue"} 6.0' in metrics

        def blue_count():
            variants = client.get("/stats/credit").json()["variants"]
            return variants[0]["requests"] if variants else 0

        assert wait_for(lambda: blue_count() == 3)
        stats = client.get("/stats/credit").json()["variants"][0]
        assert stats["variant"] == "blue" and stats["rows"] == 6 and stats["errors"] == 0
        assert client.get("/stats/credit?since_route_version=2").json()["variants"] == []

        outcome = client.post("/admin/outcomes", headers=AUTH,
                              json={"outcomes": [{"request_id": ids[0], "label": 1}]})
        assert outcome.status_code == 200 and outcome.json()["recorded"] == 1
        assert client.post("/admin/outcomes", headers=AUTH, json={"outcomes": [{"label": 1}]}).status_code == 422
        def labelled_rows():
            return read_predictions(client.gateway.engine, "credit", ["request_id", "label"], role=None,
                                    labelled_only=True)

        assert wait_for(lambda: len(labelled_rows()) == 2)
        labelled = labelled_rows()
        assert set(labelled["request_id"]) == {ids[0]} and set(labelled["label"]) == {1.0}
        status = client.get("/admin/status", headers=AUTH).json()
        assert status["prediction_log"]["dropped"] == 0 and status["route_version"] == 1


def test_not_ready_without_a_champion(serve, settings):
    db.upgrade(settings.gateway_db_url)
    missing = {"endpoints": {"credit": {"policy": "single", "variants": {"x": {"alias": "nobody"}}}}}
    with serve(missing) as client:
        assert client.get("/v2/health/ready").status_code == 503
        response = client.post("/invocations", json=split(1))
        assert response.status_code == 503 and "nobody" in response.json()["error"]


def test_the_declared_routes_answer_like_the_fast_path(settings):
    """The FastAPI routes behind ScoringFastPath (OpenAPI, or an app mounted without it) agree."""
    db.upgrade(settings.gateway_db_url)
    RouteStore(db.engine_for(settings.gateway_db_url)).replace(BLUE_GREEN, author="test")
    wrapped = create_app(settings, Gateway(settings, ModelPool(FakeRegistry())))
    with TestClient(wrapped.app) as client:  # the FastAPI app alone
        answer = client.post("/endpoints/credit/invocations", json=split(2)).json()
        np.testing.assert_allclose(answer["predictions"], expected_scores(1, records(2)), atol=1e-12)
        assert client.post("/invocations", content=b"{").status_code == 400
        assert client.post("/v2/models/credit/infer", json={"inputs": []}).status_code == 400
        paths = client.get("/openapi.json").json()["paths"]
        assert {"/invocations", "/v2/models/{name}/infer", "/admin/routes"} <= set(paths)
