"""Gateway database fixtures: a fresh database per test on SQLite and on the local PostgreSQL.

`gateway_db_url` is parametrised over both backends; `postgres_url` is PostgreSQL only.
Each yields the URL of a new, empty (never migrated) database that is removed afterwards.
Set FLIGHTDECK_TEST_POSTGRES to point at another server (default: postgres@127.0.0.1:5432,
trust auth); when it cannot be reached, the PostgreSQL cases are skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

POSTGRES = os.environ.get("FLIGHTDECK_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432")


@pytest.fixture(scope="session")
def postgres_admin():
    """An AUTOCOMMIT engine on the server's `postgres` database (CREATE / DROP DATABASE)."""
    admin = sa.create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL at {POSTGRES} is not reachable ({exc.orig}); start it or set "
                    "FLIGHTDECK_TEST_POSTGRES")
    yield admin
    admin.dispose()


@contextmanager
def new_database(postgres_admin):
    """A new, empty PostgreSQL database `flightdeck_test_<random>`; yields its URL, drops it after."""
    from flightdeck.serving import db

    name = f"flightdeck_test_{uuid.uuid4().hex[:12]}"
    with postgres_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = f"{POSTGRES}/{name}"
    try:
        yield url
    finally:
        db.dispose_engine(url)
        with postgres_admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def postgres_url(postgres_admin):
    """URL of a new, empty PostgreSQL database, dropped afterwards."""
    with new_database(postgres_admin) as url:
        yield url


@pytest.fixture(scope="module")
def module_postgres_url(postgres_admin):
    """URL of a new, empty PostgreSQL database shared by one test module (e.g. a running gateway)."""
    with new_database(postgres_admin) as url:
        yield url


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
