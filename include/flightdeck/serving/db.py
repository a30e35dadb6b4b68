"""The gateway's database: engines, the schema (SQLAlchemy Core tables) and its migrations.

One database holds the versioned route tables, the workers' running sums and the
prediction log with its outcomes. It is SQLite in the embedded mode (one file shared by
every uvicorn worker process) and PostgreSQL in production; everything here works on both.

The schema is managed by Alembic (`migrations/` next to this file) with its own version
table, `flightdeck_gateway_version`, so it can share a database with Airflow's or MLflow's
Alembic history. Workers never migrate: they call `check_schema` and refuse to start on a
stale schema; `flightdeck gateway-migrate` (i.e. `upgrade`) brings it to head.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url

from flightdeck.errors import ConfigError
from flightdeck.stats import N_SCORE_BINS

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSION_TABLE = "flightdeck_gateway_version"
MIGRATE_FIX = "run `flightdeck gateway-migrate` against this database (flightdeck.serving.db.upgrade)"

# How long a SQLite writer waits for another process's write lock before failing.
SQLITE_BUSY_TIMEOUT_S = 15.0
# The serving engine's PostgreSQL limits: a gateway worker gives up on an unreachable server or a
# stuck statement instead of holding its threads (and the requests behind them) indefinitely.
SERVING_CONNECT_TIMEOUT_S = 5
SERVING_STATEMENT_TIMEOUT_MS = 15_000
# Every other PostgreSQL engine (migrations, analysis, the release lock) gives up on a server that
# does not answer within this many seconds; its statements may run as long as they need.
CONNECT_TIMEOUT_S = 10
# Any constant identifies "flightdeck gateway migrations" among PostgreSQL advisory locks.
_PG_MIGRATION_LOCK = 0x666C6467  # "fldg"


class UtcDateTime(sa.TypeDecorator):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so values are converted to
    UTC before they are stored and get UTC attached when read. Naive inputs are taken as UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value if dialect.name == "sqlite" else value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only turns an INTEGER PRIMARY KEY into an auto-incrementing rowid, not a BIGINT one.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

SCORE_BIN_COLUMNS = tuple(f"score_bin_{i}" for i in range(N_SCORE_BINS))

route_tables = sa.Table(
    "route_tables", metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("comment", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# One row per running gateway worker: the route version it serves and when it last said so. A
# route change waits on it until every live worker serves the new version (flightdeck.serving.store).
gateway_workers = sa.Table(
    "gateway_workers", metadata,
    sa.Column("worker_id", sa.Text, primary_key=True),
    sa.Column("route_version", sa.Integer, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("heartbeat_at", UtcDateTime, nullable=False),
)

variant_stats = sa.Table(
    "variant_stats", metadata,
    # Key order puts `endpoint` first so the per-endpoint summary reads the primary key index.
    sa.Column("endpoint", sa.Text, primary_key=True),
    sa.Column("role", sa.Text, primary_key=True),
    sa.Column("variant", sa.Text, primary_key=True),
    sa.Column("model_version", sa.Text, primary_key=True),
    sa.Column("route_version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("worker_id", sa.Text, primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False),
    sa.Column("errors", sa.BigInteger, nullable=False),
    sa.Column("latency_sum", sa.Float(53), nullable=False),
    sa.Column("latency_sumsq", sa.Float(53), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("score_sum", sa.Float(53), nullable=False),
    sa.Column("score_sumsq", sa.Float(53), nullable=False),
    # Rows per score bin (flightdeck.stats.SCORE_EDGES): the score-distribution gate.
    *(sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name in SCORE_BIN_COLUMNS),
    # Shadow rows whose decision differed from the live answer (role "shadow" only).
    sa.Column("disagreements", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

predictions = sa.Table(
    "predictions", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.Text, nullable=False),
    sa.Column("row_index", sa.Integer, nullable=False),
    sa.Column("unit_id", sa.Text, nullable=True),
    sa.Column("endpoint", sa.Text, nullable=False),
    sa.Column("variant", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("route_version", sa.Integer, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("input_hash", sa.Text, nullable=False),
    sa.Column("score", sa.Float(53), nullable=False),
    sa.Column("latency_ms", sa.Float(53), nullable=False),
    sa.Column("fallback", sa.Boolean, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # The row's input as a JSON object (live rows): what a backtest replays through a challenger.
    sa.Column("features", sa.Text, nullable=True),
    # An admin forced the variant (X-Flightdeck-Variant or a pinned version): not gate or experiment evidence.
    sa.Column("forced", sa.Boolean, nullable=False, server_default=sa.false()),
    # The request id the caller sent; request_id is the gateway's own. Outcomes join on either.
    sa.Column("client_request_id", sa.Text, nullable=True),
    sa.Index("ix_predictions_request_id", "request_id"),
    sa.Index("ix_predictions_unit_id", "unit_id"),
    sa.Index("ix_predictions_client_request_id", "client_request_id"),
    sa.Index("ix_predictions_endpoint_created_at", "endpoint", "created_at"),
)

outcomes = sa.Table(
    "outcomes", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.Text, nullable=True),
    sa.Column("unit_id", sa.Text, nullable=True),
    sa.Column("label", sa.Float(53), nullable=False),
    sa.Column("observed_at", UtcDateTime, nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.CheckConstraint("request_id IS NOT NULL OR unit_id IS NOT NULL", name="ck_outcomes_has_id"),
    sa.Index("ix_outcomes_request_id", "request_id"),
    sa.Index("ix_outcomes_unit_id", "unit_id"),
)


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (what every timestamp column stores)."""
    return datetime.now(UTC)


# ---- engines --------------------------------------------------------------------------------
_engines: dict[tuple[int, str, bool], Engine] = {}
_engines_lock = threading.Lock()


def engine_for(url: str, *, serving: bool = False) -> Engine:
    """The process's engine for `url`, created on first use.

    SQLite: the parent folder is created, the file runs in WAL mode with a busy timeout so
    several worker processes can share it, and transactions are begun explicitly (see
    `write_transaction`). PostgreSQL: connections are pinged before use, so a restarted
    server costs one failed ping, not a failed request, and every engine has a connect timeout
    (a `connect_timeout` in the URL wins). The `serving` engine (the gateway's, and the stream
    scorer's sink) also has a statement timeout and a shorter connect timeout (`SERVING_*`);
    analysis and migrations, which may legitimately run long, use the other one.
    """
    key = (os.getpid(), url, serving)  # a forked child must not reuse its parent's pooled connections
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = _create_engine(url, serving)
        return engine


def dispose_engine(url: str) -> None:
    """Close the pooled connections of `url`'s engines and forget them (tests, database drops)."""
    with _engines_lock:
        engines = [_engines.pop(key) for key in list(_engines) if key[:2] == (os.getpid(), url)]
    for engine in engines:
        engine.dispose()


def _create_engine(url: str, serving: bool = False) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        if parsed.get_backend_name() == "postgresql":
            limits: dict[str, object] = {}
            if "connect_timeout" not in parsed.query:
                limits["connect_timeout"] = SERVING_CONNECT_TIMEOUT_S if serving else CONNECT_TIMEOUT_S
            if serving:
                limits["options"] = f"-c statement_timeout={SERVING_STATEMENT_TIMEOUT_MS}"
            return sa.create_engine(url, pool_pre_ping=True, connect_args=limits)
        return sa.create_engine(url, pool_pre_ping=True)
    database = parsed.database
    in_memory = not database or database == ":memory:" or parsed.query.get("mode") == "memory"
    if not in_memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Let SQLAlchemy (not the sqlite3 module) decide when a transaction begins.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        if not in_memory:
            # WAL: readers never block the writer, and several processes may share the file.
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")  # durable enough with WAL, far faster
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front: a read-then-write transaction then waits
        # for another writer instead of failing with "database is locked" on its first write.
        immediate = conn.get_execution_options().get("flightdeck_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: on SQLite it holds the write lock from its first statement.

    Commits on success, rolls back on error. On PostgreSQL it is an ordinary transaction.
    """
    with engine.connect() as conn:
        conn.execution_options(flightdeck_write=True)
        with conn.begin():
            yield conn


# ---- migrations -----------------------------------------------------------------------------
def _alembic_config(url: str | None = None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser escaping
    return config


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The revision the code expects the database to be at."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def upgrade(url: str) -> None:
    """Migrate the gateway schema at `url` to head. Safe to call again, and from several
    processes at once (PostgreSQL: an advisory lock; SQLite: the write lock)."""
    from alembic import command

    engine = engine_for(url)
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
        config = _alembic_config(url)
        config.attributes["connection"] = conn  # env.py runs on this connection and transaction
        command.upgrade(config, "head")


def current_revision(engine: Engine) -> str | None:
    """The schema revision recorded in the database, None when it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        heads = context.get_current_heads()
    return heads[0] if heads else None


def own_tables_only(name: str | None, type_: str, parent_names: dict) -> bool:
    """Alembic's `include_name` hook: compare only the tables this schema defines. The database
    may hold others (the release lock's table, written by Airflow's tasks; Airflow's or MLflow's
    own), which an autogenerated migration must not propose to drop."""
    return type_ != "table" or name in metadata.tables


def check_schema(engine: Engine) -> None:
    """Raise ConfigError unless the database behind `engine` is reachable and at head."""
    name = f"gateway database {engine.url.render_as_string(hide_password=True)}"
    try:
        revision = current_revision(engine)
    except sa.exc.OperationalError as exc:
        raise ConfigError(name, f"cannot be reached ({exc.orig})",
                          "start the database or correct FLIGHTDECK_GATEWAY_DATABASE_URL") from exc
    head = head_revision()
    if revision is None:
        raise ConfigError(name, "has no gateway schema (never migrated)", MIGRATE_FIX)
    if revision != head:
        from alembic.script import ScriptDirectory

        known = {script.revision for script in
                 ScriptDirectory.from_config(_alembic_config()).walk_revisions()}
        if revision not in known:
            raise ConfigError(name, f"is at schema revision {revision!r}, newer than this code "
                                    f"(head {head!r})", "deploy the flightdeck version that migrated it")
        raise ConfigError(name, f"is at schema revision {revision!r}, not head {head!r}", MIGRATE_FIX)
