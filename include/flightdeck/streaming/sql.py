"""PostgreSQL (or SQLite) sink: results upserted and the source position in one transaction.

Tables belong to the stream scorer (created with `create_tables`, SQLAlchemy Core; they do
not touch the gateway's migrations). Every row carries the scorer's `consumer` name, so
several scorers share a database. Results are keyed by (consumer, source offset): a batch
re-scored after a crash upserts the same keys, so even a replayed batch cannot duplicate.

On PostgreSQL each table's rows of a batch go in ONE statement, `INSERT … SELECT … FROM
unnest(<one array per column>) ON CONFLICT … DO UPDATE`, so a batch of 1,000 results is one
round trip and one plan instead of 1,000 (the driver's executemany sends a statement per
row). The statements of a batch and the position share one transaction. A value the database
refuses fails its whole statement, hence the batch: the scorer then splits the batch until
the record at fault is alone and dead-letters it, as before. SQLite keeps executemany.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from flightdeck.serving.db import UtcDateTime, engine_for
from flightdeck.streaming.broker import Checkpoint, CommitBatch, SinkRejectedError
from flightdeck.streaming.windows import window_key

metadata = sa.MetaData()

stream_results = sa.Table(
    "stream_results", metadata,
    sa.Column("consumer", sa.Text, primary_key=True),
    sa.Column("source_offset", sa.Text, primary_key=True),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("entity_id", sa.Text, nullable=False),
    sa.Column("event_time", sa.Float(53), nullable=False),
    sa.Column("score", sa.Float(53), nullable=False),
    sa.Column("predicted_label", sa.SmallInteger, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("variant", sa.Text, nullable=False),
    sa.Column("scored_at", UtcDateTime, nullable=False),
)
stream_checkpoints = sa.Table(
    "stream_checkpoints", metadata,
    sa.Column("consumer", sa.Text, primary_key=True),
    sa.Column("position", sa.Text, nullable=True),
    sa.Column("processed", sa.BigInteger, nullable=False),
    sa.Column("windows", sa.Text, nullable=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)
stream_entities = sa.Table(
    "stream_entities", metadata,
    sa.Column("consumer", sa.Text, primary_key=True),
    sa.Column("entity_id", sa.Text, primary_key=True),
    sa.Column("state", sa.Text, nullable=False),
)
stream_windows = sa.Table(
    "stream_windows", metadata,
    sa.Column("consumer", sa.Text, primary_key=True),
    sa.Column("window", sa.Text, primary_key=True),
    sa.Column("late_events", sa.BigInteger, nullable=False),
    sa.Column("record", sa.Text, nullable=False),
)
stream_dead_letters = sa.Table(
    "stream_dead_letters", metadata,
    sa.Column("consumer", sa.Text, primary_key=True),
    sa.Column("source_offset", sa.Text, primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# Drift alerts (window records whose score PSI crossed the threshold), written with the batch
# that closed the window. The event-driven DAG watches the Redis alert stream (`--sink broker`);
# with this sink, poll this table or publish its rows on.
stream_alerts = sa.Table(
    "stream_alerts", metadata,
    sa.Column("consumer", sa.Text, primary_key=True),
    sa.Column("window", sa.Text, primary_key=True),
    sa.Column("score_psi", sa.Float(53), nullable=False),
    sa.Column("alert", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)


def create_tables(url: str) -> None:
    """Create the stream scorer's tables if they do not exist (idempotent)."""
    metadata.create_all(engine_for(url))


class SqlSink:
    """The scorer's sink on a SQL database (PostgreSQL in production)."""

    def __init__(self, url: str, consumer: str) -> None:
        # The serving engine's connect and statement timeouts: a server that stops answering fails
        # the commit (the scorer stops and resumes from the stored position) instead of hanging it.
        self.engine = engine_for(url, serving=True)
        self.consumer = consumer
        dialect = self.engine.dialect.name
        self._postgres = dialect == "postgresql"
        self._insert = postgresql.insert if self._postgres else sqlite.insert

    def load(self) -> Checkpoint:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(stream_checkpoints).where(
                stream_checkpoints.c.consumer == self.consumer)).first()
        if row is None:
            return Checkpoint()
        return Checkpoint(row.position, row.processed, json.loads(row.windows) if row.windows else None)

    def entities(self, ids: list[str]) -> dict[str, dict]:
        if not ids:
            return {}
        t = stream_entities
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.entity_id, t.c.state).where(
                t.c.consumer == self.consumer, t.c.entity_id.in_(ids)))
            return {r.entity_id: json.loads(r.state) for r in rows}

    def _upsert(self, conn, table: sa.Table, rows: list[dict], keys: tuple[str, ...]) -> None:
        if not rows:
            return
        if self._postgres:
            _unnest_upsert(conn, table, rows, keys)
            return
        statement = self._insert(table)
        updates = {c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys}
        conn.execute(statement.on_conflict_do_update(index_elements=list(keys), set_=updates), rows)

    def commit(self, batch: CommitBatch) -> None:
        try:
            self._commit(batch)
        except Exception as exc:
            if _refused(exc):
                raise SinkRejectedError(f"the sink refused the batch ({_first_line(exc)})") from exc
            raise

    def _commit(self, batch: CommitBatch) -> None:
        now = datetime.now(UTC)
        me = self.consumer
        with self.engine.begin() as conn:
            # Keyed by offset, so no key comes twice in one statement (ON CONFLICT cannot update a row twice).
            self._upsert(conn, stream_results, list({r.offset: {
                "consumer": me, "source_offset": r.offset, "event_id": r.event_id, "entity_id": r.entity_id,
                "event_time": r.event_time, "score": r.score, "predicted_label": r.label,
                "model_version": r.model_version, "variant": r.variant, "scored_at": now}
                for r in batch.results}.values()), ("consumer", "source_offset"))
            self._upsert(conn, stream_dead_letters, list({d.offset: {
                "consumer": me, "source_offset": d.offset, "reason": d.storable_reason, "value": d.text,
                "created_at": now} for d in batch.dead_letters}.values()), ("consumer", "source_offset"))
            self._upsert(conn, stream_entities, [
                {"consumer": me, "entity_id": k, "state": json.dumps(v)} for k, v in batch.entities.items()],
                ("consumer", "entity_id"))
            self._upsert(conn, stream_windows, [
                {"consumer": me, "window": window_key(r), "late_events": r["late_events"], "record": json.dumps(r)}
                for r in {window_key(r): r for r in batch.window_records}.values()], ("consumer", "window"))
            self._upsert(conn, stream_alerts, [
                {"consumer": me, "window": window_key(a), "score_psi": a["score_psi"], "alert": json.dumps(a),
                 "created_at": now} for a in {window_key(a): a for a in batch.alerts}.values()],
                ("consumer", "window"))
            cp = batch.checkpoint
            self._upsert(conn, stream_checkpoints, [
                {"consumer": me, "position": cp.position, "processed": cp.processed,
                 "windows": json.dumps(cp.windows) if cp.windows is not None else None, "updated_at": now}],
                ("consumer",))

    def window_records(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [json.loads(r.record) for r in conn.execute(
                sa.select(stream_windows.c.record).where(stream_windows.c.consumer == self.consumer))]

    def close(self) -> None:
        pass


def _unnest_upsert(conn, table: sa.Table, rows: list[dict], keys: tuple[str, ...]) -> None:
    """Upsert `rows` (no key twice) into `table` with one PostgreSQL statement: a column that holds one
    value in every row is a parameter, every other column an array unnested into rows."""
    quote = conn.dialect.identifier_preparer.quote
    dialect = postgresql.dialect()
    params, selected, arrays, aliases = {}, [], [], []
    for i, column in enumerate(table.columns):
        values = [row[column.name] for row in rows]
        sql_type = column.type.compile(dialect=dialect)
        if isinstance(column.type, sa.TypeDecorator):  # e.g. UtcDateTime: bind as the column would
            values = [column.type.process_bind_param(v, dialect) for v in values]
        if all(v == values[0] for v in values):
            params[f"p{i}"] = values[0]
            selected.append(f"CAST(%(p{i})s AS {sql_type})")
        else:
            params[f"p{i}"] = values
            arrays.append(f"CAST(%(p{i})s AS {sql_type}[])")
            aliases.append(f"c{i}")
            selected.append(f"u.c{i}")
    updates = ", ".join(f"{quote(c.name)} = excluded.{quote(c.name)}" for c in table.columns if c.name not in keys)
    source = f" FROM unnest({', '.join(arrays)}) AS u({', '.join(aliases)})" if arrays else ""
    conn.exec_driver_sql(
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c.name) for c in table.columns)}) "
        f"SELECT {', '.join(selected)}{source} "
        f"ON CONFLICT ({', '.join(quote(k) for k in keys)}) "
        + (f"DO UPDATE SET {updates}" if updates else "DO NOTHING"), params)


# SQLSTATE classes that depend on the rows written, not on the server's health: data exception
# (22), integrity constraint violation (23), program limit exceeded (54, e.g. an index entry too big).
_REFUSED_CLASSES = {"22", "23", "54"}


def _refused(exc: Exception) -> bool:
    """Whether the database refused the batch's content (the same batch would fail again)."""
    if isinstance(exc, ValueError):  # a driver refusing a value before sending it (e.g. NUL in text)
        return True
    if not isinstance(exc, sa.exc.DBAPIError) or exc.connection_invalidated:
        return False
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if code:
        return code[:2] in _REFUSED_CLASSES
    return isinstance(exc, (sa.exc.DataError, sa.exc.IntegrityError))


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
