"""Stream scorer fixtures: one real ONNX model, generated events, a Redis key prefix per test, PostgreSQL."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from tests.support.models import onnx_model
from tests.support.services import REDIS_URL, redis_client


@pytest.fixture(scope="session")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream-model") / "model.onnx"
    path.write_bytes(onnx_model(1))
    return path


@pytest.fixture(scope="session")
def base_events() -> list[dict]:
    from flightdeck.streaming.producer import generated_events

    return [json.loads(v) for v in generated_events(2000)]


def events(base: list[dict], n: int) -> list[bytes]:
    """`n` events cycling over `base`, each with its own event id."""
    out = []
    for i in range(n):
        row = dict(base[i % len(base)])
        row["event_id"] = f"e{i}"
        out.append(json.dumps(row).encode())
    return out


@pytest.fixture
def redis_prefix():
    """A fresh key prefix; every key under it is deleted afterwards."""
    client = redis_client()
    prefix = f"fdtest-{uuid.uuid4().hex[:10]}"
    yield prefix
    # SCAN visits the whole keyspace: large pages keep that to a few round trips
    keys = [k for pattern in (f"{prefix}*", f"flightdeck:stream:{prefix}*")
            for k in client.scan_iter(pattern, count=5000)]
    if keys:
        client.delete(*keys)
    client.close()


def publish(prefix: str, values: list[bytes]) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    pipe = client.pipeline(transaction=False)
    for i, value in enumerate(values, 1):
        pipe.xadd(f"{prefix}:in", {"data": value})
        if i % 5000 == 0:
            pipe.execute()
    pipe.execute()
    client.close()
