"""One release of a model at a time: a lock row per model, taken and handed over by compare-and-set.

The lock is a row of `flightdeck_release_locks` (primary key: the model name) in the gateway's
database, which every release already reads (preflight and backtest replay its prediction log).
Every change is a single conditional statement, so the database decides between contenders:

- take a free model: INSERT; the primary key lets exactly one of several runs succeed;
- take it again (a retried task) or take over a lapsed lock: UPDATE … WHERE run_id = me OR
  expires_at < now; PostgreSQL re-checks the condition after waiting for a concurrent writer's
  row lock, SQLite runs writers one at a time (BEGIN IMMEDIATE), so exactly one run wins;
- release: DELETE … WHERE run_id = me, so nobody drops another run's lock.

Why not an MLflow entity: registered-model tags are upserts (last writer wins), a file store
creates a registered model by check-then-mkdir (not atomic), and although a SQL store's primary
key makes creating a registered model atomic, a lock model would show up in every model listing
and a lapsed one could not be handed over without a conditional delete, which MLflow lacks.

The table is created on first use (it is not part of the gateway's Alembic schema: the gateway
never reads it). A holder that is gone can be freed by hand with
`flightdeck release-lock free MODEL RUN_ID`; `flightdeck release-lock show MODEL` prints the holder
(flightdeck/delivery/cli.py).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from flightdeck.config import Settings, get_settings
from flightdeck.serving.db import engine_for, write_transaction

TABLE = "flightdeck_release_locks"

metadata = sa.MetaData()
release_locks = sa.Table(
    TABLE, metadata,
    sa.Column("model_name", sa.Text, primary_key=True),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),  # epoch seconds: the holder's rollout deadline
    sa.Column("taken_at", sa.Float, nullable=False),
)

_created: set[tuple[int, str]] = set()
_created_lock = threading.Lock()


@dataclass(frozen=True)
class Hold:
    """Who holds a model's release lock, and until when (epoch seconds)."""

    model_name: str
    run_id: str
    expires_at: float

    def lapsed(self, now: float | None = None) -> bool:
        return self.expires_at < (time.time() if now is None else now)


class ReleaseLocks:
    """The release locks in one database (by default the gateway's, FLIGHTDECK_GATEWAY_DATABASE_URL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> ReleaseLocks:
        return cls(engine_for((settings or get_settings()).gateway_db_url))

    def acquire(self, model_name: str, run_id: str, expires_at: float, now: float | None = None) -> Hold | None:
        """Take the lock for `run_id` until `expires_at`: None if it now holds it, else the hold that
        refused it. Free, already held by `run_id`, or lapsed (expired before `now`) are taken."""
        self._ensure_table()
        now = time.time() if now is None else now
        table = release_locks
        for _ in range(3):  # a lock released between our INSERT and our read: try once more
            with write_transaction(self.engine) as conn:
                taken = conn.execute(
                    sa.update(table)
                    .where(table.c.model_name == model_name,
                           sa.or_(table.c.run_id == run_id, table.c.expires_at < now))
                    .values(run_id=run_id, expires_at=expires_at, taken_at=now)).rowcount
            if taken == 1:
                return None
            try:
                with write_transaction(self.engine) as conn:
                    conn.execute(sa.insert(table).values(model_name=model_name, run_id=run_id,
                                                         expires_at=expires_at, taken_at=now))
                return None
            except sa.exc.IntegrityError:
                pass  # somebody holds it (or took it an instant ago)
            held = self.holder(model_name)
            if held is not None:
                return held
        return self.holder(model_name)  # pragma: no cover - three releases in a row between two statements

    def release(self, model_name: str, run_id: str) -> bool:
        """Drop the lock if `run_id` holds it; True if it did. Another run's lock is left alone."""
        self._ensure_table()
        with write_transaction(self.engine) as conn:
            return conn.execute(sa.delete(release_locks).where(release_locks.c.model_name == model_name,
                                                               release_locks.c.run_id == run_id)).rowcount == 1

    def holder(self, model_name: str) -> Hold | None:
        """The current hold on `model_name` (lapsed or not), None when the model is free."""
        self._ensure_table()
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(release_locks.c.run_id, release_locks.c.expires_at)
                               .where(release_locks.c.model_name == model_name)).first()
        return None if row is None else Hold(model_name, row.run_id, float(row.expires_at))

    def _ensure_table(self) -> None:
        key = (id(self.engine), str(self.engine.url))
        if key in _created:
            return
        with _created_lock:
            if key in _created:
                return
            try:
                with write_transaction(self.engine) as conn:
                    metadata.create_all(conn, checkfirst=True)
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError):
                # PostgreSQL: another process created it between our check and our CREATE.
                if not sa.inspect(self.engine).has_table(TABLE):
                    raise
            _created.add(key)
