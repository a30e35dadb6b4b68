"""The prediction log writer and the outcome store, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import math
import threading
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from flightdeck.serving import db
from flightdeck.serving.errors import InvalidInputError
from flightdeck.serving.predlog import Outcome, OutcomeStore, PredictionLogWriter, PredictionRecord
from flightdeck.serving.predlog_reads import missing_columns, read_predictions
from tests.support.poll import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def record(request_id: str, row: int = 0, unit_id: str | None = None, *, variant: str = "a",
           role: str = "live", score: float = 0.5, created_at: datetime | None = T0,
           endpoint: str = "default") -> PredictionRecord:
    return PredictionRecord(request_id, row, unit_id, endpoint, variant, "3", 1, role, f"hash-{request_id}-{row}",
                            score, 1.5, False, created_at)


def rows_in(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(db.predictions)).scalar_one()


def wait_until(condition, timeout: float = 20.0) -> None:
    eventually(condition, timeout, 0.01)


@pytest.fixture
def writer_factory(gateway_engine):
    writers: list[PredictionLogWriter] = []

    def make(engine=gateway_engine, **kwargs) -> PredictionLogWriter:
        options = {"queue_size": 10_000, "batch_size": 100, "flush_seconds": 0.05, "retry_backoff_s": 0.01}
        writer = PredictionLogWriter(engine, **{**options, **kwargs})
        writers.append(writer)
        return writer

    yield make
    for writer in writers:
        writer.close(timeout=2.0)


# ---- writer ----------------------------------------------------------------------------------
def test_every_row_lands_in_batches_with_its_fields(gateway_engine, writer_factory):
    writer = writer_factory(batch_size=100)
    writer.start()
    awkward = "tab\there, newline\nthere, back\\slash"
    for i in range(50):
        assert writer.submit([record(f"r{i}", row, unit_id=f"u{i}") for row in range(20)]) == 20
    writer.submit([record("odd", unit_id=awkward, created_at=None), record("naive", created_at=T0.replace(tzinfo=None))])

    assert writer.flush(timeout=20)
    assert (writer.written, writer.dropped, writer.failed, writer.queued) == (1002, 0, 0, 0)
    assert rows_in(gateway_engine) == 1002
    # 1,000 rows in batches of 100 (+ the odd ones): batched, not one insert per submit.
    assert 10 <= writer.batches <= 20

    with gateway_engine.connect() as conn:
        stored = {row.request_id: row for row in conn.execute(sa.select(db.predictions).order_by(db.predictions.c.id)).all()}
    row = stored["r7"]
    assert (row.row_index, row.unit_id, row.endpoint, row.variant, row.model_version, row.route_version,
            row.role, row.score, row.latency_ms, row.fallback) == (19, "u7", "default", "a", "3", 1, "live",
                                                                   0.5, 1.5, False)
    assert row.created_at == T0
    assert stored["odd"].unit_id == awkward
    assert abs(stored["odd"].created_at - datetime.now(UTC)) < timedelta(minutes=5)
    assert stored["naive"].created_at == T0  # naive timestamps are UTC


def test_a_full_queue_drops_and_counts_without_blocking(gateway_engine, writer_factory):
    writer = writer_factory(queue_size=50, batch_size=10)  # not started: the writer is "paused"

    accepted = [writer.submit([record(f"r{i}", row) for row in range(8)]) for i in range(10)]

    assert accepted == [8, 8, 8, 8, 8, 8, 2, 0, 0, 0]
    assert (writer.queued, writer.dropped) == (50, 30)
    writer.start()
    assert writer.flush(timeout=20)
    assert (writer.written, writer.dropped, writer.failed) == (50, 30, 0)
    assert rows_in(gateway_engine) == 50


def test_close_drains_what_is_queued_and_refuses_later_rows(gateway_engine, writer_factory):
    writer = writer_factory(batch_size=1000, flush_seconds=30)  # only close() will flush
    writer.start()
    writer.submit([record(f"r{i}") for i in range(123)])

    writer.close(timeout=10)

    assert (writer.written, writer.queued) == (123, 0)
    assert rows_in(gateway_engine) == 123
    assert writer.submit([record("late")]) == 0 and writer.dropped == 1


def test_close_without_start_still_writes(gateway_engine, writer_factory):
    writer = writer_factory()
    writer.submit([record("r1"), record("r2")])

    writer.close(timeout=10)

    assert writer.written == 2 and rows_in(gateway_engine) == 2


def test_writer_survives_a_missing_table_counts_failures_and_recovers(gateway_engine, writer_factory, caplog):
    writer = writer_factory(batch_size=10, retries=2, retry_backoff_s=0.01)
    writer.start()
    with gateway_engine.begin() as conn:  # the outage: the table is gone
        conn.execute(sa.text("ALTER TABLE predictions RENAME TO predictions_away"))

    with caplog.at_level(logging.WARNING, logger="flightdeck.serving.predlog"):
        writer.submit([record(f"lost{i}") for i in range(10)])
        wait_until(lambda: writer.failed == 10)

    assert writer.written == 0 and writer.queued == 0
    assert any("retrying" in message for message in caplog.messages)
    assert any("10 rows lost after 3 attempts" in message for message in caplog.messages)

    with gateway_engine.begin() as conn:  # the database is back
        conn.execute(sa.text("ALTER TABLE predictions_away RENAME TO predictions"))
    writer.submit([record(f"kept{i}") for i in range(10)])

    assert writer.flush(timeout=20)
    assert (writer.written, writer.failed) == (10, 10)
    assert rows_in(gateway_engine) == 10


def test_writer_survives_an_unreachable_database(postgres_url, writer_factory):
    engine = db.engine_for(postgres_url.rsplit("/", 1)[0] + "/flightdeck_no_such_database")
    writer = writer_factory(engine, batch_size=5, retries=1, retry_backoff_s=0.01)
    writer.start()

    writer.submit([record(f"r{i}") for i in range(12)])

    wait_until(lambda: writer.failed == 12)
    assert writer.written == 0
    assert writer._thread.is_alive()


def test_writer_reconnects_after_postgres_drops_its_connections(postgres_url, writer_factory):
    db.upgrade(postgres_url)
    engine = db.engine_for(postgres_url)
    writer = writer_factory(engine, batch_size=5)
    writer.start()
    writer.submit([record(f"before{i}") for i in range(5)])
    assert writer.flush(timeout=20)

    with engine.connect() as conn:  # a server restart, as far as the pool can tell
        conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    writer.submit([record(f"after{i}") for i in range(5)])

    assert writer.flush(timeout=20)
    assert (writer.written, writer.failed) == (10, 0)


def test_submit_stays_responsive_while_the_writer_works(gateway_engine, writer_factory):
    """Throughput is measured and printed, not asserted; what must hold is no drop or loss."""
    writer = writer_factory(queue_size=100_000, batch_size=1000, flush_seconds=0.2)
    writer.start()
    total, per = 20_000, 10
    now = datetime.now(UTC)
    slowest = 0.0
    started = time.perf_counter()
    for i in range(total // per):
        batch = [record(f"r{i}", row, created_at=now) for row in range(per)]
        t = time.perf_counter()
        writer.submit(batch)
        slowest = max(slowest, time.perf_counter() - t)
    assert writer.flush(timeout=60)
    elapsed = time.perf_counter() - started

    assert (writer.written, writer.dropped, writer.failed) == (total, 0, 0)
    assert writer.batches <= total // 1000 + 20
    print(f"\n{gateway_engine.dialect.name}: {total} rows in {elapsed:.2f} s "
          f"({total / elapsed:,.0f} rows/s incl. building them); slowest submit {slowest * 1e3:.2f} ms")


def test_concurrent_submitters_lose_nothing(gateway_engine, writer_factory):
    writer = writer_factory(batch_size=50)
    writer.start()

    def submitter(name: str) -> None:
        for i in range(100):
            writer.submit([record(f"{name}-{i}", row) for row in range(3)])

    threads = [threading.Thread(target=submitter, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert writer.flush(timeout=20)
    assert writer.written == 1200 and rows_in(gateway_engine) == 1200


# ---- outcomes --------------------------------------------------------------------------------
def test_outcome_validation_names_the_bad_item(gateway_engine):
    store = OutcomeStore(gateway_engine)
    good = Outcome("r1", None, 1.0)

    with pytest.raises(InvalidInputError, match="outcome 1 has neither") as raised:
        store.record([good, Outcome(None, None, 1.0)])
    assert raised.value.status == 422 and raised.value.field == "outcomes[1]"
    with pytest.raises(InvalidInputError, match=r"outcome 2: label must be a finite number"):
        store.record([good, good, Outcome("r2", None, math.nan)])
    with pytest.raises(InvalidInputError, match="outcome 0: unit_id must be a non-empty string"):
        store.record([Outcome(None, "", 1.0)])
    with pytest.raises(InvalidInputError, match="observed_at must be a datetime"):
        store.record([Outcome("r1", None, 1.0, "yesterday")])

    with gateway_engine.connect() as conn:  # all or nothing
        assert conn.execute(sa.select(sa.func.count()).select_from(db.outcomes)).scalar_one() == 0


def test_outcomes_table_refuses_a_row_without_any_id(gateway_engine):
    with pytest.raises(sa.exc.IntegrityError), gateway_engine.begin() as conn:
        conn.execute(db.outcomes.insert().values(label=1.0, observed_at=T0, recorded_at=T0))


def test_the_outcome_join_by_request_id_then_unit_id_latest_wins(gateway_engine, writer_factory):
    writer = writer_factory()
    writer.start()
    writer.submit([
        record("r1", unit_id="alice", variant="a", score=0.9, created_at=T0),
        record("r1", unit_id="alice", variant="b", role="shadow", score=0.7, created_at=T0),
        record("r2", unit_id="bob", variant="b", score=0.2, created_at=T0 + timedelta(minutes=1)),
        record("r3", unit_id="carol", variant="a", score=0.4, created_at=T0 + timedelta(minutes=2)),
        record("r4", unit_id=None, variant="a", score=0.6, created_at=T0 + timedelta(minutes=3)),
        record("r5", unit_id="bob", variant="b", score=0.3, created_at=T0 + timedelta(minutes=4),
               endpoint="other"),
        record("r6", unit_id="dave", variant="a", score=0.1, created_at=T0 + timedelta(minutes=5)),
    ])
    assert writer.flush(timeout=20)
    store = OutcomeStore(gateway_engine)

    assert store.record([
        Outcome("r1", None, 0.0, T0 + timedelta(hours=1)),
        Outcome("r1", None, 1.0, T0 + timedelta(hours=2)),   # the latest outcome for r1 wins
        Outcome(None, "alice", 0.0, T0 + timedelta(hours=3)),  # request_id beats unit_id
        Outcome(None, "bob", 1.0, T0 + timedelta(hours=1)),
        Outcome(None, "bob", 0.0, T0 + timedelta(hours=2)),   # the latest for bob
        Outcome("unknown", None, 1.0),                        # labels nothing
        Outcome(None, "dave", 0.0, T0 + timedelta(hours=1)),
    ]) == 7
    # Observed at the same time as dave's first: the one recorded later wins.
    assert store.record([Outcome(None, "dave", 1.0, T0 + timedelta(hours=1))]) == 1

    columns = ["request_id", "unit_id", "variant", "role", "score", "label", "created_at"]
    labelled = read_predictions(gateway_engine, "default", columns, role=None, labelled_only=True)
    assert list(labelled.columns) == columns
    assert [(r.request_id, r.variant, r.role, r.label) for r in labelled.itertuples()] == [
        ("r1", "a", "live", 1.0), ("r1", "b", "shadow", 1.0), ("r2", "b", "live", 0.0), ("r6", "a", "live", 1.0)]
    assert str(labelled["created_at"].dt.tz) == "UTC" and labelled["created_at"].iloc[2] == pd.Timestamp(
        T0 + timedelta(minutes=1))
    assert labelled["label"].dtype == "float64" and labelled["score"].dtype == "float64"

    # Without labelled_only the unlabelled rows stay, label NaN; live rows only by default.
    every = read_predictions(gateway_engine, "default", ["request_id", "label"])
    assert list(every["request_id"]) == ["r1", "r2", "r3", "r4", "r6"]
    assert every["label"].isna().tolist() == [False, False, True, True, False]
    assert list(read_predictions(gateway_engine, "other", ["label"])["label"]) == [0.0]
    # The filters: [start, end), the newest n (returned oldest first), the shadow role.
    window = read_predictions(gateway_engine, "default", ["request_id"], start=T0 + timedelta(seconds=30),
                              end=T0 + timedelta(minutes=3))
    assert list(window["request_id"]) == ["r2", "r3"]
    assert list(read_predictions(gateway_engine, "default", ["request_id"], newest=2)["request_id"]) == ["r4", "r6"]
    assert list(read_predictions(gateway_engine, "default", ["variant"], role="shadow")["variant"]) == ["b"]
    empty = read_predictions(gateway_engine, "nothing-here", columns)
    assert empty.empty and list(empty.columns) == columns
    with pytest.raises(ValueError, match="labels"):
        read_predictions(gateway_engine, "default", ["labels"])


def test_missing_columns_of_the_log(gateway_engine, tmp_path):
    assert missing_columns(gateway_engine, ["id", "score", "features"]) == []
    assert missing_columns(gateway_engine, ["score", "explanation"]) == ["explanation"]
    never_migrated = sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    assert missing_columns(never_migrated, ["score"]) is None
    never_migrated.dispose()
