"""`flightdeck gateway-demo`: start the gateway on the champion, call it through every protocol,
print the answers and where the metrics are, then stop it cleanly."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx

from flightdeck.config import Settings
from flightdeck.devtools.launch import port_free, stop_process_group
from flightdeck.errors import ConfigError


def _sample_rows(settings: Settings, n: int) -> list[dict]:
    """A few complete rows of the newest raw partition, as the model's inputs."""
    from flightdeck.data.partitions import list_partitions, read_partition
    from flightdeck.data.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES

    days = list_partitions(settings.raw_dir)
    if not days:
        raise ConfigError("raw data", f"no partitions under {settings.raw_dir}",
                          "run `flightdeck generate-data` (make demo does)")
    features = list(NUMERIC_FEATURES) + list(CATEGORICAL_FEATURES)
    return read_partition(settings.raw_dir, days[-1])[features].dropna().head(n).to_dict(orient="records")


def run(settings: Settings) -> None:
    """The tour. The server runs as a child process group and is always stopped."""
    from flightdeck.serving.client import GatewayClient, grpc_infer

    host, port, grpc_port = settings.gateway_host, settings.gateway_port, settings.grpc_port
    for name, value in (("FLIGHTDECK_GATEWAY_PORT", port), ("FLIGHTDECK_GRPC_PORT", grpc_port)):
        if value and not port_free(host, value):
            raise ConfigError(name, f"port {value} on {host} is in use", f"set {name} to a free port")
    rows = _sample_rows(settings, 3)
    token = secrets.token_urlsafe(24)  # this run only; never written anywhere
    env = {**os.environ, "FLIGHTDECK_ADMIN_TOKENS": json.dumps({"demo": token})}
    log_path = settings.gateway_dir / "gateway-demo.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    base = f"http://{host}:{port}"
    print(f"starting: flightdeck serve --workers {settings.gateway_workers} on {base} (gRPC :{grpc_port}); "
          f"log {log_path}")
    with open(log_path, "wb") as log:
        server = subprocess.Popen([str(Path(sys.executable).with_name("flightdeck")), "serve"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with GatewayClient(base, token) as client:
            wait_ready(client, server, log_path)
            routes = client.routes()
            endpoint = next(iter(routes["document"]["endpoints"]))
            print(f"route table v{routes['version']}: {json.dumps(routes['document'])}")
            mlflow = client.invocations(rows, endpoint=endpoint)
            print(f"POST /endpoints/{endpoint}/invocations (MLflow format) -> {_rounded(mlflow['predictions'])} "
                  f"variant={mlflow['variant']} model_version={mlflow['model_version']}")
            oip = client.infer(endpoint, rows)
            print(f"POST /v2/models/{endpoint}/infer (Open Inference Protocol) -> "
                  f"{_rounded(oip['outputs'][0]['data'])} model_version={oip['model_version']}")
            if grpc_port:
                inputs = client.metadata(endpoint)["inputs"]
                reply = grpc_infer(f"{host}:{grpc_port}", endpoint, rows, inputs)
                print(f"gRPC inference.GRPCInferenceService/ModelInfer -> "
                      f"{_rounded(reply.outputs[0].contents.fp64_contents)} model_version={reply.model_version}")
            _websocket(f"ws://{host}:{port}/stream/{endpoint}", rows)
            time.sleep(settings.stats_flush_seconds + 0.5)
            for variant in client.stats(endpoint):
                print(f"GET /stats/{endpoint}: variant {variant['variant']} v{variant['model_version']}: "
                      f"{variant['requests']} requests, mean score {variant['score_mean']:.4f}")
            print(f"metrics : {base}/metrics (Prometheus); API docs: {base}/docs; "
                  f"prediction log: {redacted(settings.gateway_db_url)} table predictions")
    finally:
        print(f"gateway stopped (exit {stop_process_group(server, 30)})")


def wait_ready(client, server: subprocess.Popen, log_path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gateway exited ({server.returncode}); see {log_path}")
        try:
            if client.ready():
                return
        except httpx.HTTPError:  # not listening yet
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gateway not ready after {timeout} s; see {log_path}")


def _websocket(url: str, rows: list[dict]) -> None:
    from websockets.sync.client import connect

    with connect(url) as ws:
        ws.send(json.dumps({"id": 1, "rows": rows}))
        answer = json.loads(ws.recv())
    print(f"WebSocket {url} -> {_rounded(answer['predictions'])} model_version={answer['model_version']}")


def _rounded(values) -> list[float]:
    return [round(float(v), 4) for v in values]


def redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
