"""Hostile callers against a real gateway on PostgreSQL: ids the database would refuse, bodies and
messages larger than the limit, columns the model does not read, variants forced where the endpoint
forbids it.

One gateway (one uvicorn worker, PostgreSQL, no cache) serves the whole module; the writer-level
test shares its database.
"""

from __future__ import annotations

import itertools
import json
import random
import socket
import threading
import time
from urllib.parse import urlsplit

import grpc
import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from flightdeck.serving import db
from flightdeck.serving.client import grpc_infer
from flightdeck.serving.predlog import PredictionLogWriter, PredictionRecord
from tests.support.gateway import AUTH, TOKEN, gateway_process
from tests.support.models import records
from tests.support.poll import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MAX_ID = 128
BODY_LIMIT = 64 * 1024
_BLUE_GREEN = {"policy": "blue_green", "active": "blue",
               "variants": {"blue": {"alias": "champion"}, "green": {"version": "2"}}}
# "credit" (first: the default endpoint) takes the hostile traffic; "open" and "locked" (allow_override
# false) are for the forced-variant refusals at the end of this module.
ROUTES = {"endpoints": {"credit": {"policy": "canary", "weights": {"stable": 100, "canary": 0},
                                   "variants": {"stable": {"alias": "champion"}, "canary": {"version": "2"}}},
                        "open": _BLUE_GREEN, "locked": {**_BLUE_GREEN, "allow_override": False}}}
ROW = records(1)[0]


@pytest.fixture(scope="module")
def gateway_and_grpc(registered_home, module_postgres_url):
    with gateway_process(registered_home, module_postgres_url, ROUTES, workers=1, FLIGHTDECK_CACHE_BACKEND="off",
                         FLIGHTDECK_MAX_BODY_BYTES=str(BODY_LIMIT)) as (base, grpc_port):
        yield base, grpc_port


@pytest.fixture(scope="module")
def gateway(gateway_and_grpc):
    return gateway_and_grpc[0]


@pytest.fixture(scope="module")
def engine(module_postgres_url):
    engine = sa.create_engine(module_postgres_url)
    yield engine
    engine.dispose()


def logged(engine, request_ids: list[str]) -> set[str]:
    p = db.predictions.c
    with engine.connect() as conn:
        return set(conn.execute(sa.select(p.request_id).where(p.request_id.in_(request_ids))).scalars())


def wait_logged(engine, request_ids: list[str], timeout: float = 30.0) -> set[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = logged(engine, request_ids)
        if len(found) == len(set(request_ids)) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def incompressible(n: int) -> str:
    """`n` hex digits that PostgreSQL cannot compress into an index row (seeded)."""
    return random.Random(n).randbytes(n // 2 + 1).hex()[:n]


def valid_id(value: str) -> bool:
    return 1 <= len(value) <= MAX_ID and value.isprintable()


# Ids as a caller may send them: ordinary ones, any Unicode text (NUL and controls included),
# and long ones past the b-tree row limit of PostgreSQL's indexes.
ordinary = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=MAX_ID)
any_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=300)
long_ids = st.integers(MAX_ID + 1, 9000).map(lambda n: incompressible(n))
header_safe = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=9000)
PLACES = ("params.unit_id", "oip.id", "oip.parameters.unit_id", "header.x-unit-id", "header.x-request-id")


@st.composite
def hostile_requests(draw):
    place = draw(st.sampled_from(PLACES))
    value = draw(header_safe if place.startswith("header.") else st.one_of(ordinary, any_text, long_ids))
    extra = draw(st.dictionaries(st.text(st.characters(codec="utf-8"), min_size=1, max_size=20),
                                 st.one_of(st.text(st.characters(codec="utf-8"), max_size=50), st.integers()),
                                 max_size=3))
    rows = [{**ROW, **{k: v for k, v in extra.items() if k not in ROW}} for _ in range(draw(st.integers(1, 3)))]
    return place, value, rows


def send(client: httpx.Client, place: str, value: str, rows: list[dict]) -> httpx.Response:
    if place.startswith("oip."):
        inputs = [{"name": name, "datatype": "FP64" if isinstance(ROW[name], float) else "BYTES",
                   "shape": [len(rows)], "data": [r[name] for r in rows]} for name in ROW]
        body = {"inputs": inputs, **({"id": value} if place == "oip.id" else {"parameters": {"unit_id": value}})}
        return client.post("/v2/models/credit/infer", json=body)
    body = {"dataframe_records": rows}
    if place == "params.unit_id":
        return client.post("/endpoints/credit/invocations", json={**body, "params": {"unit_id": value}})
    return client.post("/endpoints/credit/invocations", json=body, headers={place.removeprefix("header."): value})


class GoodTraffic:
    """Well-behaved clients scoring in the background; remembers the request ids it was given."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.request_ids: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> GoodTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            for i in itertools.count():
                if self._stop.is_set():
                    return
                reply = client.post("/endpoints/credit/invocations", json={"dataframe_records": [ROW]},
                                    headers={"X-Unit-Id": f"good-{i}"})
                if reply.status_code == 200:
                    self.request_ids.append(reply.json()["request_id"])
                else:
                    self.failures.append(reply.text)
                time.sleep(0.005)


def test_hostile_ids_are_refused_at_the_edge_and_never_cost_good_rows(gateway, engine):
    accepted: list[str] = []
    with GoodTraffic(gateway) as good, httpx.Client(base_url=gateway, timeout=10) as client:

        @seed(20261204)
        @settings(max_examples=120, deadline=None, database=None, derandomize=False,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(hostile_requests())
        def check(request):
            place, value, rows = request
            reply = send(client, place, value, rows)
            assert reply.status_code < 500, reply.text
            if valid_id(value):
                assert reply.status_code == 200, (place, value[:40], reply.text)
                answer = reply.json()
                accepted.append(answer["parameters"]["request_id"] if place.startswith("oip.")
                                else answer["request_id"])
            else:
                assert reply.status_code == 400, (place, repr(value[:40]), reply.text)
                error = reply.json()
                assert error["field"] and str(MAX_ID) in error["error"], error

        check()
        after_hostile = len(good.request_ids)  # good traffic keeps flowing after the last hostile request
        eventually(lambda: len(good.request_ids) >= after_hostile + 20, 30, 0.05,
                   what="20 good requests answered after the last hostile one")
    assert not good.failures, good.failures[:3]
    assert len(good.request_ids) > 20
    wanted = good.request_ids + accepted
    missing = set(wanted) - wait_logged(engine, wanted)
    assert not missing, f"{len(missing)} of {len(set(wanted))} accepted requests are not in the log"


def record(request_id: str, unit_id: str | None = None) -> PredictionRecord:
    return PredictionRecord(request_id, 0, unit_id, "writer-test", "a", "1", 1, "live", "h", 0.5, 1.0)


def test_a_row_the_database_refuses_costs_only_that_row(gateway, engine, module_postgres_url):
    writer = PredictionLogWriter(db.engine_for(module_postgres_url), queue_size=1000, batch_size=500,
                                 flush_seconds=5, retry_backoff_s=0.01)
    good = [f"writer-good-{i}" for i in range(200)]
    batch = [record(r, unit_id="u") for r in good[:100]]
    batch += [record("writer-nul", unit_id="bad\x00unit"), record(incompressible(9000), unit_id="u")]
    batch += [record(r, unit_id="u") for r in good[100:]]
    try:
        assert writer.submit(batch) == 202  # one batch: the writer takes it whole
        writer.start()
        assert writer.flush(timeout=30)
        assert (writer.written, writer.failed, writer.dropped) == (200, 2, 0)
        assert logged(engine, good) == set(good)
        assert not logged(engine, ["writer-nul"])
    finally:
        writer.close(timeout=5)


def raw_request(base: str, head: str, body_parts: list[bytes], pause: float = 0.0) -> bytes:
    """Send a request over a plain socket, body in parts; return what the server answered.

    Reading starts after the headers, so a reply that comes before the body is seen here even
    though the body is never (completely) sent."""
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head.encode())
        for part in body_parts:
            sock.settimeout(pause or 0.01)
            try:
                reply = sock.recv(65536)
                if reply:
                    return reply
            except TimeoutError:
                pass
            sock.sendall(part)
        sock.settimeout(10)
        return sock.recv(65536)


def test_an_oversized_admin_body_is_refused_before_it_is_read(gateway):
    # Declares 10 GB and sends 1 KB: the answer must come without the body.
    head = ("PUT /admin/routes HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            f"Content-Length: {10 * 1024 ** 3}\r\n\r\n")
    reply = raw_request(gateway, head, [b"{" + b" " * 1023], pause=2.0)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


@pytest.mark.parametrize("route", ["PUT /admin/routes", "POST /endpoints/credit/invocations"])
def test_a_streamed_body_past_the_limit_is_cut_off(gateway, route):
    head = (f"{route} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (16 * 1024, b" " * 16 * 1024)
    reply = raw_request(gateway, head, [chunk] * (BODY_LIMIT // (16 * 1024) + 4), pause=0.2)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"connection: close" in reply.lower()  # the rest of the body is never read as a request


def test_an_oversized_websocket_message_closes_the_stream_with_1009(gateway):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    url = gateway.replace("http://", "ws://") + "/stream/credit"
    with connect(url, max_size=None) as ws:
        ws.send(httpx.Response(200, json=ROW).text)  # a normal message is answered
        assert "predictions" in ws.recv(timeout=10)
        ws.send("[" + " " * (BODY_LIMIT + 1) + "]")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_only_the_model_inputs_are_logged(gateway, engine):
    row = {**ROW, "zz_not_a_feature": "x" * 2000}
    reply = httpx.post(f"{gateway}/endpoints/credit/invocations", json={"dataframe_records": [row]})
    assert reply.status_code == 200, reply.text
    request_id = reply.json()["request_id"]
    assert wait_logged(engine, [request_id]) == {request_id}
    with engine.connect() as conn:
        features = conn.execute(sa.select(db.predictions.c.features)
                                .where(db.predictions.c.request_id == request_id)).scalar_one()
    import json

    assert sorted(json.loads(features)) == sorted(ROW)


# ---- forcing a variant is an admin's privilege ---------------------------------------------
def forced_rows(engine, request_id: str) -> list[tuple]:
    p = db.predictions.c
    with engine.connect() as conn:
        return conn.execute(sa.select(p.variant, p.forced, p.client_request_id)
                            .where(p.request_id == request_id)).all()


def variant_requests(base: str, variant: str) -> int:
    """Live requests the running sums (what the gates read) hold for `variant`."""
    variants = httpx.get(f"{base}/stats/credit").json()["variants"]
    return sum(v["requests"] for v in variants if v["variant"] == variant)


def test_a_caller_without_an_admin_token_cannot_force_a_variant(gateway_and_grpc):
    import grpc

    from flightdeck.serving.client import grpc_infer

    base, grpc_port = gateway_and_grpc
    body = {"dataframe_records": [ROW]}
    for headers, payload in (({"X-Flightdeck-Variant": "canary"}, body),
                             ({}, {**body, "params": {"variant": "canary"}}),
                             ({"X-Flightdeck-Variant": "canary", "Authorization": "Bearer not-the-token"}, body)):
        reply = httpx.post(f"{base}/endpoints/credit/invocations", json=payload, headers=headers)
        assert reply.status_code == 403, reply.text
        assert reply.json()["field"] in ("X-Flightdeck-Variant", "params.variant")
        assert "admin token" in reply.json()["error"]
    inputs = httpx.get(f"{base}/v2/models/credit").json()["inputs"]
    with pytest.raises(grpc.RpcError) as refused:
        grpc_infer(f"127.0.0.1:{grpc_port}", "credit", [ROW], inputs, variant="canary")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    reply = grpc_infer(f"127.0.0.1:{grpc_port}", "credit", [ROW], inputs, variant="canary", token=TOKEN)
    assert reply.parameters["variant"].string_param == "canary"


def test_forced_requests_are_flagged_and_kept_out_of_gate_and_experiment_evidence(gateway, engine):
    from datetime import UTC, datetime, timedelta

    from flightdeck.experiments.metrics import read_rows

    before, stable_before = variant_requests(gateway, "canary"), variant_requests(gateway, "stable")
    reply = httpx.post(f"{gateway}/endpoints/credit/invocations", json={"dataframe_records": [ROW]},
                       headers={**AUTH, "X-Flightdeck-Variant": "canary"})
    assert reply.status_code == 200 and reply.json()["variant"] == "canary", reply.text
    forced_id = reply.json()["request_id"]
    normal = httpx.post(f"{gateway}/endpoints/credit/invocations", json={"dataframe_records": [ROW]}).json()
    assert wait_logged(engine, [forced_id, normal["request_id"]]) == {forced_id, normal["request_id"]}
    assert forced_rows(engine, forced_id) == [("canary", True, None)]
    assert forced_rows(engine, normal["request_id"]) == [("stable", False, None)]

    # The normal request came after the forced one: once the published sums hold it, they would
    # hold the forced one too, had it been counted.
    eventually(lambda: variant_requests(gateway, "stable") > stable_before, 10, 0.05,
               what="the normal request in the published running sums")
    assert variant_requests(gateway, "canary") == before
    now = datetime.now(UTC)
    rows = read_rows(engine, "credit", now - timedelta(hours=1), now + timedelta(minutes=1))
    assert normal["request_id"] in set(rows["request_id"]) and forced_id not in set(rows["request_id"])


def test_request_ids_are_the_servers_and_outcomes_still_join_on_the_clients_id(gateway, engine):
    from flightdeck.serving.predlog_reads import read_predictions

    client_id = f"order-{random.Random(7).randrange(10**9)}"
    answers = [httpx.post(f"{gateway}/endpoints/credit/invocations", json={"dataframe_records": [ROW]},
                          headers={"X-Request-Id": client_id}).json() for _ in range(2)]
    server_ids = [a["request_id"] for a in answers]
    assert len(set(server_ids)) == 2 and client_id not in server_ids  # a reused client id stays apart
    assert all(a["client_request_id"] == client_id for a in answers)
    assert wait_logged(engine, server_ids) == set(server_ids)
    assert {row[2] for sid in server_ids for row in forced_rows(engine, sid)} == {client_id}

    recorded = httpx.post(f"{gateway}/admin/outcomes", headers=AUTH,
                          json={"outcomes": [{"request_id": client_id, "label": 1}]})
    assert recorded.status_code == 200, recorded.text
    labelled = read_predictions(engine, "credit", ["request_id", "label"], labelled_only=True)
    assert set(server_ids) <= set(labelled["request_id"])
    assert set(labelled.loc[labelled["request_id"].isin(server_ids), "label"]) == {1.0}


# ---- a forced variant where the endpoint sets allow_override: false ---------------------------
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
    body = {"dataframe_records": records(2)}
    with httpx.Client(base_url=gateway, timeout=10) as client:
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

    headers = {"X-Flightdeck-Variant": "green", **AUTH}
    base = gateway.replace("http://", "ws://")
    with connect(base + "/stream/locked", additional_headers=headers) as ws:
        ws.send(json.dumps(ROW))
        reply = json.loads(ws.recv(timeout=10))
        assert reply["status"] == 403 and "does not allow forcing" in reply["error"], reply
        ws.send(json.dumps(ROW))  # the stream stays open, refusing each message the same way
        assert json.loads(ws.recv(timeout=10))["status"] == 403
    with connect(base + "/stream/open", additional_headers=headers) as ws:
        ws.send(json.dumps(ROW))
        assert json.loads(ws.recv(timeout=10))["variant"] == "green"
    with connect(base + "/stream/open", additional_headers={"X-Flightdeck-Variant": "green"}) as ws:  # no admin
        ws.send(json.dumps(ROW))
        assert json.loads(ws.recv(timeout=10))["status"] == 403


def test_grpc_refuses_a_forced_variant_on_a_locked_endpoint(gateway_and_grpc):
    base, grpc_port = gateway_and_grpc
    inputs = httpx.get(f"{base}/v2/models/locked").json()["inputs"]
    target = f"127.0.0.1:{grpc_port}"
    with pytest.raises(grpc.RpcError) as refused:
        grpc_infer(target, "locked", records(2), inputs, variant="green", token=TOKEN)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "endpoint 'locked' does not allow forcing a variant" in refused.value.details()
    assert grpc_infer(target, "open", records(2), inputs, variant="green", token=TOKEN).model_version == "2"
