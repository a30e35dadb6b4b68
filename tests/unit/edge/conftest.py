from __future__ import annotations

import pytest

from flightdeck.edge.agent import Agent, AgentConfig
from flightdeck.edge.keys import generate_keypair, load_private_key
from flightdeck.edge.store import LocalStore
from tests.support.models import MODEL


@pytest.fixture
def keys(tmp_path):
    private_path, public_path = generate_keypair(tmp_path / "keys")
    return load_private_key(private_path), public_path


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "store")


@pytest.fixture
def make_agent(tmp_path, keys, store):
    def make(device_id: str = "device-1", store_=None, **options) -> Agent:
        config = AgentConfig(root=tmp_path / "device", store_uri=store.uri, model_name=MODEL, device_id=device_id,
                             public_key_path=keys[1], retry_seconds=0.0, **options)
        return Agent(config, store=store_ or store)
    return make
