"""Versioned route tables. Every stored version is also the audit record of the change.

Versions are 1, 2, 3, … with no gaps: `replace` writes current+1 and the primary key makes
two writers that raced for the same number collide, so one of them retries (or, when it
said which version it expected, gets a VersionConflictError) — never two tables with one
version, never a silently lost change.

How a new version reaches the workers: on PostgreSQL the insert also sends a notification
(`NOTIFY flightdeck_routes`, delivered when the transaction commits) that every worker
listens for (`RouteListener`), so a change reaches them in milliseconds; every worker also
polls the version (`route_poll_seconds`), the only way on SQLite and the fallback while a
listening connection is down. Each worker records the version it serves in
`gateway_workers` (`WorkerRegistry`), which is how a route change waits until all of them
have switched.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from flightdeck.serving.db import gateway_workers, route_tables, utcnow, write_transaction
from flightdeck.serving.errors import RouteTableError, VersionConflictError

log = logging.getLogger(__name__)

# The PostgreSQL channel a stored route version is announced on (payload: the version number).
ROUTES_CHANNEL = "flightdeck_routes"

# Each collision means another writer succeeded, so this bounds a burst of that many writers.
MAX_REPLACE_ATTEMPTS = 50


@dataclass(frozen=True)
class StoredRoutes:
    """One stored version of the route table."""

    version: int
    document: dict
    author: str
    comment: str | None
    created_at: datetime

    def to_dict(self) -> dict:
        """JSON-ready form (created_at as ISO 8601)."""
        return {"version": self.version, "document": self.document, "author": self.author,
                "comment": self.comment, "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class AuditRecord:
    """One change of the route table: who, when, why, and the documents before and after."""

    version: int
    author: str
    created_at: datetime
    comment: str | None
    old_document: dict | None
    new_document: dict

    def to_dict(self) -> dict:
        """JSON-ready form (created_at as ISO 8601)."""
        return {"version": self.version, "author": self.author, "created_at": self.created_at.isoformat(),
                "comment": self.comment, "old_document": self.old_document, "new_document": self.new_document}


def version_conflict(expected: int, current: int) -> VersionConflictError:
    """The error for a replace that expected `expected` while the store is at `current`."""
    error = VersionConflictError(
        f"route table conflict: the change was made against version {expected}, but the current "
        f"version is {current}. Fix: GET the route table again (version {current}), reapply "
        f"your change to it and send it with expected_version={current}.",
        field="expected_version")
    error.expected_version = expected
    error.current_version = current
    return error


class RouteStore:
    """The route tables in the gateway database (see `flightdeck.serving.db`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def current_version(self) -> int:
        """The newest version, 0 when none is stored. One primary-key lookup (workers poll it)."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(route_tables.c.version))).scalar() or 0

    def current(self) -> StoredRoutes | None:
        """The route table in force, None when none is stored yet."""
        query = sa.select(route_tables).order_by(route_tables.c.version.desc()).limit(1)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _stored(row) if row else None

    def get(self, version: int) -> StoredRoutes | None:
        """One stored version, None when there is no such version."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(route_tables).where(route_tables.c.version == version)).first()
        return _stored(row) if row else None

    def replace(self, document: dict, author: str, expected_version: int | None = None,
                comment: str | None = None) -> StoredRoutes:
        """Store `document` as version current+1 and return it.

        With `expected_version`, refuse (VersionConflictError) unless it is the current
        version: the caller edited a table someone else has since replaced. Without it, a
        writer that loses a race for a version number retries with the next one.
        """
        document = _json_copy(document)
        for _ in range(MAX_REPLACE_ATTEMPTS):
            try:
                return self._insert_next(document, author, expected_version, comment)
            except sa.exc.IntegrityError:
                # Another writer took our version number between our read and our insert.
                if expected_version is not None:
                    raise version_conflict(expected_version, self.current_version()) from None
                time.sleep(random.uniform(0, 0.01))  # de-synchronise the writers still racing
        raise RouteTableError(
            f"could not store the route table: {MAX_REPLACE_ATTEMPTS} concurrent writers won the race "
            "for the next version. Fix: retry; if it persists, find what is replacing it in a loop.")

    def _insert_next(self, document: dict, author: str, expected_version: int | None,
                     comment: str | None) -> StoredRoutes:
        # On SQLite the write transaction holds the lock from the read on, so no race there;
        # on PostgreSQL two readers can both see N and the primary key rejects the second N+1.
        with write_transaction(self.engine) as conn:
            current = conn.execute(sa.select(sa.func.max(route_tables.c.version))).scalar() or 0
            if expected_version is not None and expected_version != current:
                raise version_conflict(expected_version, current)
            stored = StoredRoutes(current + 1, document, author, comment, utcnow())
            conn.execute(route_tables.insert().values(
                version=stored.version, document=document, author=author, comment=comment,
                created_at=stored.created_at))
            if conn.dialect.name == "postgresql":  # sent at commit; never for a rolled-back insert
                conn.execute(sa.select(sa.func.pg_notify(ROUTES_CHANNEL, str(stored.version))))
        return stored

    def history(self, limit: int = 50) -> list[AuditRecord]:
        """The newest `limit` changes, newest first, each with the document it replaced."""
        query = sa.select(route_tables).order_by(route_tables.c.version.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        records = []
        for newer, older in zip(rows[:limit], [*rows[1:], None], strict=False):
            records.append(AuditRecord(newer.version, newer.author, newer.created_at, newer.comment,
                                       older.document if older is not None else None, newer.document))
        return records


def _stored(row) -> StoredRoutes:
    return StoredRoutes(row.version, row.document, row.author, row.comment, row.created_at)


def _json_copy(document: dict) -> dict:
    """A deep copy through JSON, so what is stored is exactly what is returned."""
    if not isinstance(document, dict):
        raise RouteTableError(f"a route table must be a JSON object, got {type(document).__name__}. "
                              "Fix: send a mapping with an `endpoints` key.", field="document")
    try:
        return json.loads(json.dumps(document, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise RouteTableError(f"the route table is not JSON-serialisable ({exc}). "
                              "Fix: use only strings, numbers, booleans, lists and mappings.",
                              field="document") from exc


# ---- workers ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerState:
    """One live worker: the route version it serves and when it last said so."""

    worker_id: str
    route_version: int
    heartbeat_at: datetime

    def to_dict(self) -> dict:
        return {"worker_id": self.worker_id, "route_version": self.route_version,
                "heartbeat_at": self.heartbeat_at.isoformat()}


class WorkerRegistry:
    """The `gateway_workers` table: each worker upserts its route version whenever it installs a
    table and on every heartbeat; a worker whose heartbeat is older than `live_within_s` counts
    as gone (killed without a goodbye), so it cannot hold a route change's wait forever."""

    def __init__(self, engine: Engine, live_within_s: float) -> None:
        self.engine = engine
        self.live_within_s = live_within_s
        dialect = engine.dialect.name
        if dialect not in ("postgresql", "sqlite"):
            raise NotImplementedError(f"the gateway database supports PostgreSQL and SQLite, not {dialect}")
        self._insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(gateway_workers)

    def announce(self, worker_id: str, route_version: int) -> None:
        """This worker serves `route_version` (and is alive)."""
        now = utcnow()
        statement = self._insert.values(worker_id=worker_id, route_version=route_version, started_at=now,
                                        heartbeat_at=now)
        newer = statement.excluded.route_version
        # Never backwards: a heartbeat read before a switch may commit after the switch's own announce.
        statement = statement.on_conflict_do_update(
            index_elements=["worker_id"],
            set_={"route_version": sa.case((newer > gateway_workers.c.route_version, newer),
                                           else_=gateway_workers.c.route_version),
                  "heartbeat_at": statement.excluded.heartbeat_at})
        with write_transaction(self.engine) as conn:
            conn.execute(statement)

    def forget(self, worker_id: str) -> None:
        """This worker stops: the waits no longer count on it."""
        with write_transaction(self.engine) as conn:
            conn.execute(gateway_workers.delete().where(gateway_workers.c.worker_id == worker_id))

    def live(self) -> list[WorkerState]:
        """The workers that sent a heartbeat within `live_within_s`, by id."""
        since = utcnow() - timedelta(seconds=self.live_within_s)
        c = gateway_workers.c
        query = (sa.select(c.worker_id, c.route_version, c.heartbeat_at)
                 .where(c.heartbeat_at >= since).order_by(c.worker_id))
        with self.engine.connect() as conn:
            return [WorkerState(*row) for row in conn.execute(query)]

    def lagging(self, version: int) -> list[WorkerState]:
        """The live workers still serving a route version older than `version`."""
        return [worker for worker in self.live() if worker.route_version < version]


# ---- push ------------------------------------------------------------------------------------
class RouteListener:
    """Route versions pushed by PostgreSQL (LISTEN `ROUTES_CHANNEL`), awaited in the event loop.

    `run()` holds one autocommit connection (psycopg's asyncio connection, whatever driver the
    engine uses) and calls `on_version(n)` for each version announced, in the loop: no thread,
    no polling. It returns or raises when the connection is lost; the caller opens it again.
    """

    def __init__(self, engine: Engine, on_version: Callable[[int], None]) -> None:
        self.engine = engine
        self.on_version = on_version

    @staticmethod
    def supported(engine: Engine) -> bool:
        return engine.dialect.name == "postgresql"

    async def run(self, on_listening: Callable[[], None] | None = None) -> None:
        import psycopg

        conninfo = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        connection = await psycopg.AsyncConnection.connect(conninfo, autocommit=True, connect_timeout=5)
        async with connection:
            await connection.execute(f"LISTEN {ROUTES_CHANNEL}")
            if on_listening is not None:
                on_listening()
            async for notification in connection.notifies():
                if notification.payload.isdigit():
                    self.on_version(int(notification.payload))
