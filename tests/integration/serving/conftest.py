"""Gateway database fixtures: a fresh database per test on SQLite and on the local PostgreSQL.

`gateway_db_url` is parametrised over both backends (`postgres_url`, PostgreSQL only, comes from
tests/conftest.py). Each yields the URL of a new, empty (never migrated) database that is
removed afterwards. Set FLIGHTDECK_TEST_POSTGRES to point at another server (default:
postgres@127.0.0.1:5432, trust auth); when it cannot be reached, the PostgreSQL cases are
skipped with the reason (and fail under CI).
"""

from __future__ import annotations

import pytest


@pytest.fixture
def sqlite_url(tmp_path):
    """URL of a new SQLite file (created on first connect) in the test's tmp folder."""
    from flightdeck.serving import db

    url = f"sqlite:///{tmp_path / 'gateway' / 'gateway.db'}"
    yield url
    db.dispose_engine(url)


@pytest.fixture(params=["sqlite", "postgres"])
def gateway_db_url(request) -> str:
    """URL of a new, empty gateway database: once on SQLite, once on PostgreSQL."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


@pytest.fixture
def gateway_engine(gateway_db_url):
    """The engine of a migrated gateway database (both backends)."""
    from flightdeck.serving import db

    db.upgrade(gateway_db_url)
    return db.engine_for(gateway_db_url)


@pytest.fixture(scope="session")
def registered_home(tmp_path_factory):
    """A FLIGHTDECK_HOME whose MLflow registry has model versions 1 (champion) and 2 (challenger).

    Registered once and shared by every module that starts a gateway on it; the gateways only
    read the registry, and each writes its own files (routes, log, metrics) under its port."""
    from tests.support.gateway import register_two_versions

    home = tmp_path_factory.mktemp("gateway-home")
    register_two_versions(home)
    return home
