"""stream_replay end to end with one dag.test(): a range of the input stream is re-scored with
the registered champion through the batch path; the output holds exactly that range's events."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pandas as pd
import pytest
import redis

from tests.integration.streaming.conftest import REDIS_URL, events, publish
from tests.support.models import MODEL, onnx_model, records

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def register_champion(home, onnx_bytes: bytes) -> str:
    """One registered version (the `champion`) of `onnx_bytes` in the MLflow store under `home`."""
    from flightdeck import runtime
    from flightdeck.config import Settings
    from flightdeck.registry import Registry

    registry = Registry.from_settings(Settings(home=home))
    run_id = registry.log_run("stream-replay-test", {}, {}, {}, "stream replay test")
    example = pd.DataFrame(records(3))
    uri = registry.log_onnx_model(run_id, onnx.load_from_string(onnx_bytes), example,
                                  runtime.score(runtime.load_session(onnx_bytes), example))
    registration = registry.register(MODEL, uri, run_id, "stream-replay-test")
    assert "champion" in registration.aliases
    return registration.version


def test_stream_replay_rescores_a_range_with_the_champion(sqlite_sandbox, redis_prefix, base_events, monkeypatch,
                                                          tmp_path):
    from flightdeck import runtime
    from tests.integration.conftest import REPO

    home = sqlite_sandbox.root / "flightdeck"
    # MLflow infers the model's pip requirements in a subprocess (~10 s); nothing here reads them.
    monkeypatch.setenv("MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT", "1")
    onnx_bytes = onnx_model(2)
    version = register_champion(home, onnx_bytes)
    values = events(base_events, 120)
    publish(redis_prefix, values[:20] + [b"poison"] + values[20:])
    ids = [i.decode() for i, _ in redis.Redis.from_url(REDIS_URL).xrange(f"{redis_prefix}:in")]
    start, end = ids[10], ids[-11]  # entries 10 … 110: 100 events and the poison one (left out)

    dags = tmp_path / "dags"  # only this DAG: a broken DAG elsewhere in the folder cannot fail this test
    dags.mkdir()
    shutil.copy(REPO / "dags" / "stream_replay.py", dags)
    outcome = sqlite_sandbox.dag_test("stream_replay", {"stream": f"{redis_prefix}:in", "start": start, "end": end,
                                                        "redis_url": REDIS_URL},
                                      env={"FLIGHTDECK_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags)})
    assert outcome.get("state") == "success", outcome["log"][-5000:]

    (written,) = (home / "predictions" / "replay").glob("replay-*.parquet")
    frame = pd.read_parquet(written)
    expected = [json.loads(v) for v in values[10:110]]
    assert list(frame["customer_id"]) == [row["customer_id"] for row in expected]
    assert set(frame["model_version"]) == {version}
    direct = runtime.score(runtime.load_session(onnx_bytes), pd.DataFrame(expected))
    np.testing.assert_allclose(frame["score"].to_numpy(), direct, rtol=0, atol=1e-12)
