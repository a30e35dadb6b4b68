"""No request body, however wrong, makes the gateway answer 5xx (property-based, hypothesis)."""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from flightdeck.config import Settings
from flightdeck.serving import db
from flightdeck.serving.app import create_app
from flightdeck.serving.gateway import Gateway
from flightdeck.serving.models import ModelPool
from flightdeck.serving.store import RouteStore
from tests.support.models import FEATURES, FakeRegistry, records

ROUTES = {"endpoints": {"credit": {"policy": "canary", "weights": {"a": 1, "b": 1},
                                   "variants": {"a": {"version": "1"}, "b": {"version": "2"}}}}}

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=8))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=12)
field_names = st.one_of(st.sampled_from(FEATURES), st.text(max_size=6))


@st.composite
def damaged_records(draw):
    """Valid rows with a few fields dropped, renamed or given arbitrary JSON values."""
    rows = [dict(r) for r in records(draw(st.integers(1, 3)))]
    for _ in range(draw(st.integers(0, 4))):
        row = draw(st.sampled_from(rows))
        action = draw(st.sampled_from(["drop", "set", "add"]))
        if action == "drop" and row:
            row.pop(draw(st.sampled_from(sorted(row))))
        else:
            row[draw(field_names)] = draw(json_values)
    return rows


@st.composite
def bodies(draw):
    rows = draw(damaged_records())
    shape = draw(st.sampled_from(["records", "split", "inputs", "oip", "raw", "random"]))
    if shape == "records":
        return "/invocations", orjson.dumps({"dataframe_records": rows})
    if shape == "split":
        columns = sorted({k for r in rows for k in r})
        return "/invocations", orjson.dumps(
            {"dataframe_split": {"columns": columns, "data": [[r.get(c) for c in columns] for r in rows]},
             "params": draw(json_values)})
    if shape == "inputs":
        return "/invocations", orjson.dumps({"inputs": {k: [r.get(k) for r in rows] for k in rows[0]}})
    if shape == "oip":
        tensors = [{"name": k, "datatype": draw(st.sampled_from(["FP64", "BYTES", "INT8", "?"])),
                    "shape": draw(st.sampled_from([[len(rows)], [len(rows), 1], [len(rows), 2], [-1], "x"])),
                    "data": [r.get(k) for r in rows]} for k in rows[0]]
        return "/v2/models/credit/infer", orjson.dumps({"inputs": tensors, "parameters": draw(json_values)})
    if shape == "raw":
        return draw(st.sampled_from(["/invocations", "/v2/models/credit/infer"])), draw(st.binary(max_size=64))
    return draw(st.sampled_from(["/invocations", "/v2/models/credit/infer"])), orjson.dumps(draw(json_values))


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    home = tmp_path_factory.mktemp("fuzz")
    config = Settings(home=home, gateway_database_url=f"sqlite:///{home / 'gateway.db'}", grpc_port=0,
                      cache_backend="off", max_batch_rows=5)
    db.upgrade(config.gateway_db_url)
    RouteStore(db.engine_for(config.gateway_db_url)).replace(ROUTES, author="test")
    with TestClient(create_app(config, Gateway(config, ModelPool(FakeRegistry())))) as client:
        yield client


@seed(20261205)  # the same 400 bodies on every run: a failure in CI reproduces on a laptop
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=bodies(), unit=st.one_of(st.none(), st.text(max_size=5)))
def test_no_body_gets_a_5xx(client, request, unit):
    path, body = request
    headers = {"content-type": "application/json"}
    if unit:
        headers["X-Unit-Id"] = unit.encode("ascii", "ignore").decode() or "u"
    response = client.post(path, content=body, headers=headers)
    assert response.status_code < 500, (path, body, response.text)
    if response.status_code >= 400:
        assert response.json()["error"]  # every refusal says why
