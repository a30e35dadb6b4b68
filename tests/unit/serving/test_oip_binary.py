"""OIP v2 binary tensor data extension on REST, in process: bodies built and answers read by
tritonclient's own encoder and decoder, and every malformed binary body a clear 400.

The same client over real sockets (REST and gRPC, two uvicorn workers) is in
tests/integration/serving/test_oip_clients.py.
"""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pandas as pd
import pytest
import tritonclient.http as triton_http
from fastapi.testclient import TestClient

from flightdeck import runtime
from flightdeck.config import Settings
from flightdeck.serving import db, payloads
from flightdeck.serving.app import create_app
from flightdeck.serving.errors import MalformedRequestError
from flightdeck.serving.gateway import Gateway
from flightdeck.serving.models import ModelPool
from flightdeck.serving.store import RouteStore
from tests.support.models import FakeRegistry, onnx_model, records

ROUTES = {"endpoints": {"credit": {"policy": "single", "variants": {"champion": {"alias": "champion"}}}}}
URL = "/v2/models/credit/infer"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("oip-binary")
    settings = Settings(home=root / "home", gateway_database_url=f"sqlite:///{root / 'gateway.db'}",
                        admin_tokens={"ops": "oip-binary-admin-token-0123456789"}, grpc_port=0,
                        max_batch_rows=50, max_body_bytes=200_000)
    db.upgrade(settings.gateway_db_url)
    RouteStore(db.engine_for(settings.gateway_db_url)).replace(ROUTES, author="test")
    with TestClient(create_app(settings, Gateway(settings, ModelPool(FakeRegistry())))) as test_client:
        yield test_client
    db.dispose_engine(settings.gateway_db_url)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return pd.DataFrame(records(6))


def triton_inputs(frame: pd.DataFrame, binary: bool = True) -> list:
    """One [n, 1] input per column, as a tritonclient user builds them (binary by default)."""
    inputs = []
    for column in frame.columns:
        values = frame[column].to_numpy()
        if values.dtype.kind == "f":
            array, datatype = values.astype(np.float64).reshape(-1, 1), "FP64"
        else:
            array, datatype = values.astype(np.object_).reshape(-1, 1), "BYTES"
        tensor = triton_http.InferInput(column, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def post(client, body: bytes, header_length: int | None = None):
    headers = {"Content-Type": "application/octet-stream"}
    if header_length is not None:
        headers["Inference-Header-Content-Length"] = str(header_length)
    return client.post(URL, content=body, headers=headers)


def read_answer(response) -> np.ndarray:
    length = response.headers.get("inference-header-content-length")
    result = triton_http.InferenceServerClient.parse_response_body(
        response.content, header_length=int(length) if length else None)
    return result.as_numpy("probabilities")


def expected(frame: pd.DataFrame) -> np.ndarray:
    return runtime.score(runtime.load_session(onnx_model(1)), frame)


@pytest.mark.parametrize(("binary_in", "outputs", "binary_out"), [
    (True, None, True),  # tritonclient's defaults: binary inputs, every output binary
    (True, [("probabilities", False)], False),
    (False, None, True),  # JSON inputs still get binary_data_output: true
    (False, [("probabilities", False)], False),
    (True, [("probabilities", True)], True),
], ids=["defaults", "binary-in-json-out", "json-in-binary-out", "all-json", "output-asked-binary"])
def test_triton_encodings_get_the_model_scores(client, frame, binary_in, outputs, binary_out):
    requested = [triton_http.InferRequestedOutput(name, binary_data=b) for name, b in outputs] if outputs else None
    body, json_size = triton_http.InferenceServerClient.generate_request_body(
        triton_inputs(frame, binary_in), outputs=requested)
    response = post(client, body, json_size)
    assert response.status_code == 200, response.text
    assert ("inference-header-content-length" in response.headers) is binary_out
    assert response.headers["content-type"] == ("application/octet-stream" if binary_out else "application/json")
    np.testing.assert_allclose(read_answer(response), expected(frame), rtol=0, atol=1e-12)


def test_binary_answer_carries_the_json_answer_fields(client, frame):
    body, json_size = triton_http.InferenceServerClient.generate_request_body(
        triton_inputs(frame), request_id="caller-7")
    binary = post(client, body, json_size)
    length = int(binary.headers["inference-header-content-length"])
    header = orjson.loads(binary.content[:length])
    plain = client.post(URL, json={"id": "caller-7", "inputs": [
        {"name": c, "datatype": "FP64" if frame[c].dtype.kind == "f" else "BYTES", "shape": [len(frame), 1],
         "data": frame[c].tolist()} for c in frame.columns]}).json()
    assert header["id"] == plain["id"] == "caller-7"
    assert header["outputs"][0] == {"name": "probabilities", "datatype": "FP64", "shape": [len(frame)],
                                    "parameters": {"binary_data_size": 8 * len(frame)}}
    assert len(binary.content) == length + 8 * len(frame)
    assert np.frombuffer(binary.content[length:], "<f8").tolist() == plain["outputs"][0]["data"]


def _binary_body(frame: pd.DataFrame) -> tuple[bytes, int]:
    return triton_http.InferenceServerClient.generate_request_body(triton_inputs(frame))


def _with_header(header: dict, binary: bytes) -> tuple[bytes, int]:
    text = orjson.dumps(header)
    return text + binary, len(text)


def _malformed(frame: pd.DataFrame) -> dict[str, tuple[bytes, str | None, str]]:
    body, size = _binary_body(frame)
    header = orjson.loads(body[:size])
    age = {"name": "age", "datatype": "FP64", "shape": [1, 1], "parameters": {"binary_data_size": 8}}
    city = {"name": "region", "datatype": "BYTES", "shape": [1, 1], "parameters": {"binary_data_size": 9}}
    return {
        "header length not a number": (body, "twelve", "must be a byte count"),
        "header length past the body": (body, str(len(body) + 1), "body has"),
        "header length zero": (body, "0", "1 to the body's length"),
        "header cut inside the JSON": (body, str(size - 3), "not a JSON header"),
        "tensors shorter than declared": (body[:-5], str(size), "binary byte(s) follow the JSON header"),
        "bytes left over": (body + b"\0" * 8, str(size), "belong to no input"),
        "binary size not a count": (*_with_header({"inputs": [{**age, "parameters": {"binary_data_size": "8"}}]},
                                                  b"\0" * 8), "binary_data_size must be a byte count"),
        "data and binary both": (*_with_header({"inputs": [{**age, "data": [1.0]}]}, b"\0" * 8), "one way only"),
        "FP64 bytes not whole elements": (*_with_header({"inputs": [{**age, "parameters": {"binary_data_size": 7}}]},
                                                        b"\0" * 7), "whole number of 8-byte FP64"),
        "BYTES length prefix runs past": (*_with_header({"inputs": [city]}, struct.pack("<I", 50) + b"north"),
                                          "runs past the end"),
        "BYTES not UTF-8": (*_with_header({"inputs": [city]}, struct.pack("<I", 5) + b"\xff\xfe\xfd\xfc\xfb"),
                            "not UTF-8"),
        "unknown datatype": (*_with_header({"inputs": [{**age, "datatype": "FP128"}]}, b"\0" * 8),
                             "unknown datatype"),
        "unknown output": (*_with_header({**header, "outputs": [{"name": "logits"}]}, body[size:]),
                           "this model's outputs are"),
        "binary_data_output not a bool": (*_with_header({**header, "parameters": {"binary_data_output": "yes"}},
                                                        body[size:]), "must be true or false"),
    }


CASES = list(_malformed(pd.DataFrame(records(2))))


@pytest.mark.parametrize("case", CASES)
def test_malformed_binary_bodies_are_400_naming_the_problem(client, case):
    body, header_length, fragment = _malformed(pd.DataFrame(records(2)))[case]
    headers = {"Content-Type": "application/octet-stream"}
    if header_length is not None:
        headers["Inference-Header-Content-Length"] = str(header_length)
    response = client.post(URL, content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]


def test_a_binary_body_without_its_header_is_400_naming_the_header(client, frame):
    body, _ = _binary_body(frame)
    response = post(client, body)
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


def test_split_oip_body_without_the_header_is_plain_json():
    assert payloads.split_oip_body(b'{"inputs": []}', None) == ({"inputs": []}, None)
    with pytest.raises(MalformedRequestError, match="byte count"):
        payloads.split_oip_body(b"{}", "-1")
