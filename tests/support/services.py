"""The local services the integration tests use (PostgreSQL, Redis, Prometheus), and what to do
when one is missing: skip on a developer machine, fail under CI (CI set), which must provide it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

POSTGRES = os.environ.get("FLIGHTDECK_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("FLIGHTDECK_TEST_REDIS", "redis://127.0.0.1:6379/0")


def require_service(name: str, probe: Callable[[], object]):
    """Run `probe` (which raises, or returns a falsy value, when `name` is missing) and return
    its result. A missing service skips the test, or fails it under CI."""
    try:
        result = probe()
        error = None if result else "the probe found nothing"
    except Exception as exc:  # noqa: BLE001 - any failure of the probe means the service is missing
        result, error = None, f"{type(exc).__name__}: {exc}"
    if error is None:
        return result
    reason = f"{name} is not available ({error})"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must provide it before the tests", pytrace=False)
    pytest.skip(reason)


def postgres_admin_engine():
    """An AUTOCOMMIT engine on the server's `postgres` database (CREATE / DROP DATABASE);
    skips (fails under CI) when PostgreSQL cannot be reached."""
    import sqlalchemy as sa

    admin = sa.create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")

    def probe() -> bool:
        with admin.connect() as conn:
            return conn.execute(sa.text("SELECT 1")).scalar_one() == 1

    try:
        require_service(f"PostgreSQL at {POSTGRES} (set FLIGHTDECK_TEST_POSTGRES to use another)", probe)
    except BaseException:
        admin.dispose()
        raise
    return admin


@contextmanager
def new_database(postgres_admin, prefix: str = "flightdeck_test") -> Iterator[str]:
    """A new, empty PostgreSQL database `<prefix>_<random>`; yields its URL, drops it after."""
    import sqlalchemy as sa

    from flightdeck.serving import db

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with postgres_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = f"{POSTGRES}/{name}"
    try:
        yield url
    finally:
        db.dispose_engine(url)
        with postgres_admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def redis_client():
    """A Redis client on REDIS_URL; skips (fails under CI) when Redis does not answer."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    require_service(f"Redis at {REDIS_URL}", client.ping)
    return client
