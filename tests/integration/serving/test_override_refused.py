"""A forced variant on an endpoint whose route table sets `allow_override: false` is refused on every
transport of a real `flightdeck serve` (REST, OIP v2 REST, WebSocket, gRPC) instead of being served
by the endpoint's policy; the same admin request on an endpoint that allows it is forced."""

from __future__ import annotations

import json

import grpc
import httpx
import pytest

from flightdeck.serving.client import grpc_infer
from tests.support.gateway import AUTH, TOKEN, gateway_process
from tests.support.models import records

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

_BLUE_GREEN = {"policy": "blue_green", "active": "blue",
               "variants": {"blue": {"alias": "champion"}, "green": {"version": "2"}}}
ROUTES = {"endpoints": {"open": _BLUE_GREEN, "locked": {**_BLUE_GREEN, "allow_override": False}}}


@pytest.fixture(scope="module")
def gateway(registered_home, module_postgres_url):
    with gateway_process(registered_home, module_postgres_url, ROUTES, workers=1) as (base, grpc_port):
        yield base, grpc_port


def _refused(reply: httpx.Response, field: str) -> None:
    assert reply.status_code == 403, reply.text
    body = reply.json()
    assert body["error_code"] == "OverrideDisabledError" and body["field"] == field
    assert "endpoint 'locked' does not allow forcing a variant" in body["error"]
    assert "allow_override: true" in body["error"]


def _oip_body(rows: list[dict], inputs: list[dict], **parameters) -> dict:
    tensors = [{"name": s["name"], "datatype": s["datatype"], "shape": [len(rows), 1],
                "data": [r[s["name"]] for r in rows]} for s in inputs]
    return {"inputs": tensors, **({"parameters": parameters} if parameters else {})}


def test_rest_refuses_a_forced_variant_on_a_locked_endpoint(gateway):
    base, _ = gateway
    body = {"dataframe_records": records(2)}
    with httpx.Client(base_url=base, timeout=10) as client:
        _refused(client.post("/endpoints/locked/invocations", json=body,
                             headers={"X-Flightdeck-Variant": "green", **AUTH}), "X-Flightdeck-Variant")
        _refused(client.post("/endpoints/locked/invocations", json={**body, "params": {"variant": "green"}},
                             headers=AUTH), "X-Flightdeck-Variant")
        inputs = client.get("/v2/models/locked").json()["inputs"]
        _refused(client.post("/v2/models/locked/infer", json=_oip_body(records(2), inputs, variant="green"),
                             headers=AUTH), "X-Flightdeck-Variant")
        _refused(client.post("/v2/models/locked/versions/2/infer", json=_oip_body(records(2), inputs),
                             headers=AUTH), "version")
        # Without an override the locked endpoint serves its policy; the open one takes the admin's override.
        plain = client.post("/endpoints/locked/invocations", json=body)
        assert plain.status_code == 200 and plain.json()["variant"] == "blue"
        forced = client.post("/endpoints/open/invocations", json=body, headers={"X-Flightdeck-Variant": "green", **AUTH})
        assert forced.status_code == 200 and forced.json()["variant"] == "green", forced.text


def test_websocket_answers_a_forced_variant_on_a_locked_endpoint_with_403(gateway):
    from websockets.sync.client import connect

    base, _ = gateway
    headers = {"X-Flightdeck-Variant": "green", **AUTH}
    row = records(1)[0]
    with connect(base.replace("http://", "ws://") + "/stream/locked", additional_headers=headers) as ws:
        ws.send(json.dumps(row))
        reply = json.loads(ws.recv(timeout=10))
        assert reply["status"] == 403 and "does not allow forcing" in reply["error"], reply
        ws.send(json.dumps(row))  # the stream stays open, refusing each message the same way
        assert json.loads(ws.recv(timeout=10))["status"] == 403
    with connect(base.replace("http://", "ws://") + "/stream/open", additional_headers=headers) as ws:
        ws.send(json.dumps(row))
        assert json.loads(ws.recv(timeout=10))["variant"] == "green"
    with connect(base.replace("http://", "ws://") + "/stream/open",
                 additional_headers={"X-Flightdeck-Variant": "green"}) as ws:  # not an admin
        ws.send(json.dumps(row))
        assert json.loads(ws.recv(timeout=10))["status"] == 403


def test_grpc_refuses_a_forced_variant_on_a_locked_endpoint(gateway):
    base, grpc_port = gateway
    inputs = httpx.get(f"{base}/v2/models/locked").json()["inputs"]
    target = f"127.0.0.1:{grpc_port}"
    with pytest.raises(grpc.RpcError) as refused:
        grpc_infer(target, "locked", records(2), inputs, variant="green", token=TOKEN)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "endpoint 'locked' does not allow forcing a variant" in refused.value.details()
    assert grpc_infer(target, "open", records(2), inputs, variant="green", token=TOKEN).model_version == "2"
