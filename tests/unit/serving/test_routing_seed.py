"""FLIGHTDECK_ROUTING_SEED: a seeded gateway draws its weighted routing from a reproducible sequence
(the one `random.Random(seed)` gives); unset, routing stays unseeded."""

from __future__ import annotations

import random

from fastapi.testclient import TestClient

from flightdeck.config import Settings
from flightdeck.serving import db
from flightdeck.serving.app import create_app
from flightdeck.serving.gateway import Gateway
from flightdeck.serving.models import ModelPool
from flightdeck.serving.store import RouteStore
from tests.support.models import FakeRegistry, records

CANARY = {"endpoints": {"credit": {"policy": "canary", "weights": {"stable": 70, "canary": 30},
                                   "variants": {"stable": {"version": "1"}, "canary": {"version": "2"}}}}}
N = 60


def _variants(tmp_path, name: str, seed: int | None) -> list[str]:
    settings = Settings(home=tmp_path / name, gateway_database_url=f"sqlite:///{tmp_path / name}.db", grpc_port=0,
                        routing_seed=seed, cache_backend="off")
    db.upgrade(settings.gateway_db_url)
    RouteStore(db.engine_for(settings.gateway_db_url)).replace(CANARY, author="test")
    row = records(1)[0]
    with TestClient(create_app(settings, Gateway(settings, ModelPool(FakeRegistry())))) as client:
        return [client.post("/endpoints/credit/invocations", json={"dataframe_records": [row]}).json()["variant"]
                for _ in range(N)]


def test_a_seeded_gateway_routes_by_the_seeded_sequence(tmp_path):
    draws = random.Random(3)
    expected = ["stable" if draws.random() < 0.7 else "canary" for _ in range(N)]
    assert _variants(tmp_path, "first", 3) == expected == _variants(tmp_path, "second", 3)
    assert 5 < expected.count("canary") < 35  # a weighted split, not one variant


def test_the_setting_defaults_to_unseeded(monkeypatch):
    monkeypatch.delenv("FLIGHTDECK_ROUTING_SEED", raising=False)
    assert Settings().routing_seed is None
    monkeypatch.setenv("FLIGHTDECK_ROUTING_SEED", "11")
    assert Settings().routing_seed == 11
