"""Triton's Python client (`tritonclient`), with its defaults, against `flightdeck serve` on loopback.

Two uvicorn workers on PostgreSQL, a real MLflow registry, gRPC on a non-default port given as
`--grpc-port`. REST goes through the binary tensor data extension (tritonclient's default) and
gRPC through raw_input_contents / raw_output_contents; both must give the scores of the
gateway's plain JSON answer. The gRPC client runs in a process of its own (triton_grpc_call.py):
its messages and the gateway's stubs cannot share protobuf's descriptor pool. KServe's client is not tested: it cannot be installed beside
Airflow 3.3 (kserve >= 0.14 pins psutil < 6, the Task SDK needs psutil >= 6.1).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from tests.support.gateway import gateway_process
from tests.support.models import records

pytestmark = [pytest.mark.integration]

ROUTES = {"endpoints": {"credit": {"policy": "single", "variants": {"champion": {"alias": "champion"}}}}}
ROWS = 40
TOLERANCE = 1e-9
GRPC_CALL = Path(__file__).with_name("triton_grpc_call.py")


@pytest.fixture(scope="module")
def server(registered_home, module_postgres_url):
    with gateway_process(registered_home, module_postgres_url, ROUTES, workers=2,
                         FLIGHTDECK_CACHE_BACKEND="off") as (base, grpc_port):
        yield base, grpc_port


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return pd.DataFrame(records(ROWS, seed=23))


@pytest.fixture(scope="module")
def json_scores(server, frame) -> np.ndarray:
    """The gateway's answer to a plain JSON OIP v2 request: what every client must reproduce."""
    base, _ = server
    tensors = [{"name": c, "datatype": "FP64" if frame[c].dtype.kind == "f" else "BYTES",
                "shape": [len(frame), 1], "data": frame[c].tolist()} for c in frame.columns]
    response = httpx.post(f"{base}/v2/models/credit/infer", json={"inputs": tensors}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return np.asarray(response.json()["outputs"][0]["data"])


def triton_inputs(module, frame: pd.DataFrame) -> list:
    """One [n, 1] input per feature, as a user fills them: FP64 numbers, BYTES strings."""
    inputs = []
    for column in frame.columns:
        values = frame[column].to_numpy()
        numeric = values.dtype.kind == "f"
        array = (values.astype(np.float64) if numeric else values.astype(np.object_)).reshape(-1, 1)
        tensor = module.InferInput(column, list(array.shape), "FP64" if numeric else "BYTES")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def test_triton_http_client_with_its_defaults(server, frame, json_scores):
    base, _ = server
    client = triton_http.InferenceServerClient(url=base.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_model_ready("credit")
        result = client.infer("credit", triton_inputs(triton_http, frame))  # binary in, binary out
        np.testing.assert_allclose(result.as_numpy("probabilities"), json_scores, rtol=0, atol=TOLERANCE)
        as_json = client.infer("credit", triton_inputs(triton_http, frame),
                               outputs=[triton_http.InferRequestedOutput("probabilities", binary_data=False)])
        np.testing.assert_allclose(as_json.as_numpy("probabilities"), json_scores, rtol=0, atol=TOLERANCE)
        with pytest.raises(InferenceServerException, match="this model's outputs are"):
            client.infer("credit", triton_inputs(triton_http, frame),
                         outputs=[triton_http.InferRequestedOutput("logits")])
    finally:
        client.close()


def test_triton_grpc_client_with_its_defaults_on_the_flag_port(server, frame, json_scores, tmp_path):
    _, grpc_port = server
    assert grpc_port != 8081, "the launcher must pass a non-default --grpc-port"
    rows = tmp_path / "rows.json"
    rows.write_text(frame.to_json(orient="records"))
    done = subprocess.run([sys.executable, str(GRPC_CALL), f"127.0.0.1:{grpc_port}", str(rows)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ready"] and report["raw_outputs"] == 1  # answered in raw_output_contents
    np.testing.assert_allclose(np.asarray(report["scores"]), json_scores, rtol=0, atol=TOLERANCE)
    assert "only output is 'probabilities'" in (report["unknown_output_error"] or ""), report


def test_every_worker_listens_on_the_flag_grpc_port(server):
    """`flightdeck serve --grpc-port P --workers 2`: both uvicorn workers serve gRPC on P, none on
    the default 8081 (the flag reaches the spawned workers through the environment)."""
    base, grpc_port = server
    port = base.rsplit(":", 1)[1]
    listening = [c for c in psutil.net_connections("tcp") if c.status == "LISTEN"]
    grpc_owners = {c.pid for c in listening if c.laddr.port == grpc_port}
    parents = {psutil.Process(pid).parent() for pid in grpc_owners}
    assert len(grpc_owners) == 2 and len(parents) == 1, grpc_owners
    (parent,) = parents
    command = parent.cmdline()
    assert "serve" in command and command[command.index("--port") + 1] == port, command
    workers = {child.pid for child in parent.children(recursive=True)}
    assert grpc_owners <= workers
    assert not {c.pid for c in listening if c.laddr.port == 8081} & (workers | {parent.pid})


def test_malformed_binary_body_is_400_over_the_wire(server, frame):
    base, _ = server
    body, json_size = triton_http.InferenceServerClient.generate_request_body(triton_inputs(triton_http, frame))
    response = httpx.post(f"{base}/v2/models/credit/infer", content=body[:-3], timeout=30,
                          headers={"Inference-Header-Content-Length": str(json_size),
                                   "Content-Type": "application/octet-stream"})
    assert response.status_code == 400
    assert "binary byte(s) follow the JSON header" in response.json()["error"]
