"""Run `flightdeck serve` for tests: a real MLflow registry, uvicorn workers, PostgreSQL, Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import httpx
import onnx
import pandas as pd
import yaml

from flightdeck.config import Settings
from flightdeck.devtools.launch import free_port, stop_process_group
from tests.support.models import MODEL, onnx_model, records
from tests.support.poll import eventually

TOKEN = "integration-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FLIGHTDECK = str(Path(sys.executable).with_name("flightdeck"))


def register_two_versions(home: Path) -> None:
    """Versions 1 (champion) and 2 (challenger) of the model in a real MLflow store under `home`."""
    from flightdeck.registry import Registry

    registry = Registry.from_settings(Settings(home=home))
    example = pd.DataFrame(records(2))
    for seed in (1, 2):
        run_id = registry.log_run(f"gateway-test-{seed}", {"seed": seed}, {}, {}, run_name=f"seed-{seed}")
        uri = registry.log_onnx_model(run_id, onnx.load_from_string(onnx_model(seed)), example, [0.5, 0.5])
        registry.register(MODEL, uri, run_id, training_key=f"gateway-test-{seed}")


@contextmanager
def gateway_process(home: Path, database_url: str, routes: dict, workers: int = 2, **env: str):
    """`flightdeck serve` in its own process group; yields (base_url, grpc_port); stops it after."""
    port, grpc_port = free_port(), free_port()
    routes_file = home / f"routes-{port}.yaml"
    routes_file.write_text(yaml.safe_dump(routes))
    environment = {**os.environ, "FLIGHTDECK_HOME": str(home), "FLIGHTDECK_GATEWAY_DATABASE_URL": database_url,
                   "FLIGHTDECK_ADMIN_TOKENS": f'{{"ops": "{TOKEN}"}}', "FLIGHTDECK_ROUTE_POLL_SECONDS": "0.2",
                   "FLIGHTDECK_STATS_FLUSH_SECONDS": "0.2", **env}
    log_path = home / f"gateway-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [FLIGHTDECK, "serve", "--port", str(port), "--workers", str(workers), "--grpc-port", str(grpc_port),
             "--routes", str(routes_file)], env=environment, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, workers, process, log_path)
        yield base, grpc_port
    finally:
        stop_process_group(process, 20)


def _wait_ready(base: str, workers: int, process: subprocess.Popen, log_path: Path, timeout: float = 90) -> None:
    """Ready means every worker answers: poll on fresh connections until `workers` distinct ids are ready."""
    seen: set[str] = set()

    def every_worker_ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with httpx.Client(timeout=2) as client:
                status = client.get(f"{base}/admin/status", headers=AUTH)
                if status.status_code == 200 and status.json()["route_version"] > 0:
                    seen.add(status.json()["worker_id"])
        except httpx.HTTPError:
            pass
        return len(seen) >= workers

    eventually(every_worker_ready, timeout, what=f"{workers} gateway worker(s) ready",
               detail=lambda: f"{len(seen)} seen:\n{log_path.read_text()[-3000:]}")
