"""MLflow's own tools score a version registered the way `train_register` registers it.

The version comes from the train_register stages (`flightdeck.training.pipeline`, which the
DAG's tasks call) in a real MLflow store; no copy is re-saved. `mlflow.pyfunc.load_model` on
`models:/<name>@champion` and a real `mlflow models serve` process on a free loopback port
score the raw feature frame (`dataframe_split` and `dataframe_records`), and both agree with
the gateway's `/invocations` answer for the same rows to 1e-9.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from flightdeck.data.schema import FEATURES
from flightdeck.devtools.launch import free_port, stop_process_group
from tests.integration.edge.world import MODEL, register_version
from tests.support.poll import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DAY = "2026-02-03"  # after the training window
ROWS = 120
TOLERANCE = 1e-9
ROUTES = {"endpoints": {"credit": {"policy": "single", "variants": {"champion": {"alias": "champion"}}}}}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(settings, the day's raw feature frame): a champion registered by the train_register stages."""
    from flightdeck.config import get_settings
    from flightdeck.data.generator import write_partitions
    from flightdeck.data.partitions import read_partition

    home = (tmp_path_factory.mktemp("mlflow-tools") / "flightdeck").resolve()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLIGHTDECK_HOME", str(home))
        patch.setenv("MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT", "1")  # see docs/ARCHITECTURE.md, pitfalls
        get_settings.cache_clear()
        try:
            register_version(home)
            settings = get_settings()
            write_partitions(settings.raw_dir, DAY, DAY, rows_per_day=ROWS, seed=9)
            frame = read_partition(settings.raw_dir, DAY)[list(FEATURES)]
            assert not frame.isna().any().any() and isinstance(frame.index, pd.RangeIndex)
            yield settings, frame
        finally:
            get_settings.cache_clear()


@pytest.fixture(scope="module")
def gateway_scores(world) -> np.ndarray:
    """The gateway's answer (in process, on the same MLflow store) to the frame as `dataframe_split`."""
    from fastapi.testclient import TestClient

    from flightdeck.registry import Registry
    from flightdeck.serving import db
    from flightdeck.serving.app import create_app
    from flightdeck.serving.gateway import Gateway
    from flightdeck.serving.models import ModelPool
    from flightdeck.serving.store import RouteStore

    settings, frame = world
    settings = settings.model_copy(update={"grpc_port": 0, "max_batch_rows": 1000,
                                           "gateway_database_url": f"sqlite:///{settings.home / 'gw.db'}"})
    db.upgrade(settings.gateway_db_url)
    RouteStore(db.engine_for(settings.gateway_db_url)).replace(ROUTES, author="test")
    gateway = Gateway(settings, ModelPool(Registry.from_settings(settings)))
    with TestClient(create_app(settings, gateway)) as client:
        answer = client.post("/endpoints/credit/invocations", json=_split(frame))
    db.dispose_engine(settings.gateway_db_url)
    assert answer.status_code == 200, answer.text
    return np.asarray(answer.json()["predictions"])


def _split(frame: pd.DataFrame) -> dict:
    return {"dataframe_split": {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}}


def test_pyfunc_scores_the_raw_frame_like_the_gateway(world, gateway_scores):
    import mlflow

    from flightdeck import runtime
    from flightdeck.registry import Registry

    settings, frame = world
    Registry.from_settings(settings)  # points MLflow's fluent API at this store
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    predicted = model.predict(frame)[runtime.PROBABILITIES][:, 1]
    np.testing.assert_allclose(predicted, gateway_scores, rtol=0, atol=TOLERANCE)


def test_mlflow_models_serve_scores_the_raw_frame_like_the_gateway(world, gateway_scores):
    settings, frame = world
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "MLFLOW_TRACKING_URI": settings.tracking_uri,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}  # it execs `uvicorn` from PATH
    log_path = settings.home / f"mlflow-serve-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@champion",
             "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def pinged() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"mlflow models serve exited {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                return httpx.get(f"{base}/ping", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(pinged, 120, interval=0.5, what="mlflow models serve to answer /ping",
                   detail=lambda: log_path.read_text()[-3000:])
        bodies = {"dataframe_split": _split(frame), "dataframe_records": {
            "dataframe_records": frame.to_dict(orient="records")}}
        for name, body in bodies.items():
            answer = httpx.post(f"{base}/invocations", json=body, timeout=60)
            assert answer.status_code == 200, f"{name}: {answer.text[:500]}"
            probabilities = np.asarray(answer.json()["predictions"]["probabilities"])[:, 1]
            np.testing.assert_allclose(probabilities, gateway_scores, rtol=0, atol=TOLERANCE, err_msg=name)
    finally:
        stop_process_group(process, 20)
