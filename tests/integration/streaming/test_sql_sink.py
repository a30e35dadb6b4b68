"""The SQL sink on PostgreSQL: a batch is one statement per table and one transaction with the position;
a refused value fails the whole batch and writes nothing of it; a stuck commit times out instead of
hanging the scorer, and is not mistaken for a refusal."""

from __future__ import annotations

import random
import string
import threading

import pytest
import sqlalchemy as sa

from flightdeck.serving import db
from flightdeck.streaming.broker import Checkpoint, CommitBatch, SinkRejectedError
from flightdeck.streaming.events import DeadLetter, ScoredEvent
from flightdeck.streaming.sql import SqlSink, create_tables

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _batch(first: int, n: int, entity=lambda i: f"c{i % 7}") -> CommitBatch:
    results = [ScoredEvent(f"{i}-0", f"e{i}", entity(i), 1_700_000_000.0 + i, i / (first + n), int(i % 2 == 0),
                           "3", "default", 1, 0.5) for i in range(first, first + n)]
    dead = [DeadLetter(f"{first + n}-0", "not JSON. Fix: publish one JSON object per event.", b"{x")]
    entities = {r.entity_id: {"n": 1, "mean_score": r.score, "last_event_time": r.event_time} for r in results}
    window = {"kind": "tumbling", "start": 60.0, "end": 120.0, "model_version": "3", "count": n, "late_events": 0}
    return CommitBatch(results, dead, entities, [window], Checkpoint(f"{first + n}-0", first + n + 1, {}))


def test_a_batch_is_one_statement_per_table_in_the_transaction_that_stores_the_position(postgres_url):
    create_tables(postgres_url)
    sink = SqlSink(postgres_url, "scorer-a")
    statements: list[tuple[str, bool]] = []
    # An executemany is sent row by row by psycopg2: every statement must be a single execute.
    sa.event.listen(sink.engine, "before_cursor_execute", lambda conn, cursor, statement, params, context, many:
                    statements.append((statement.split("(")[0].strip(), many)))
    sink.commit(_batch(0, 1000))
    assert sorted(statements) == sorted((f"INSERT INTO {t}", False) for t in (
        "stream_results", "stream_dead_letters", "stream_entities", "stream_windows", "stream_checkpoints"))
    sink.commit(_batch(0, 1000))  # the same batch again, as after a crash: upserted, not duplicated
    with sink.engine.connect() as conn:
        results = conn.execute(sa.text("SELECT source_offset, event_id, entity_id, score, predicted_label, "
                                       "model_version, consumer FROM stream_results ORDER BY event_time")).all()
        dead = conn.execute(sa.text("SELECT source_offset, value FROM stream_dead_letters")).all()
        entities = conn.execute(sa.text("SELECT count(*) FROM stream_entities")).scalar_one()
    assert len(results) == 1000 and results[999] == ("999-0", "e999", "c5", 0.999, 0, "3", "scorer-a")
    assert [tuple(d) for d in dead] == [("1000-0", "{x")] and entities == 7
    assert sink.load() == Checkpoint("1000-0", 1001, {})


def test_a_value_the_database_refuses_fails_the_batch_and_writes_nothing_of_it(postgres_url):
    create_tables(postgres_url)
    sink = SqlSink(postgres_url, "scorer-b")
    sink.commit(_batch(0, 10))
    # An entity id beyond what a PostgreSQL index entry can hold (random, so it does not compress), in one
    # row of the next batch.
    too_long = "".join(random.Random(1).choices(string.ascii_letters, k=12_000))
    with pytest.raises(SinkRejectedError, match="the sink refused the batch"):
        sink.commit(_batch(10, 500, entity=lambda i: too_long if i == 300 else f"c{i % 7}"))
    with sink.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM stream_results")).scalar_one() == 10
    assert sink.load().position == "10-0"  # the position stayed with what was written


def test_a_commit_stuck_on_the_server_times_out_and_is_not_taken_for_a_refusal(postgres_url, monkeypatch):
    monkeypatch.setattr(db, "SERVING_STATEMENT_TIMEOUT_MS", 300)
    create_tables(postgres_url)
    sink = SqlSink(postgres_url, "scorer-c")
    locker = sa.create_engine(postgres_url)
    outcome: list[BaseException] = []

    def commit() -> None:
        try:
            sink.commit(_batch(0, 10))
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    try:
        with locker.connect() as lock, lock.begin():  # another session holds the results table
            lock.execute(sa.text("LOCK TABLE stream_results IN ACCESS EXCLUSIVE MODE"))
            attempt = threading.Thread(target=commit, daemon=True)
            attempt.start()
            attempt.join(20)  # without a statement timeout the commit would wait for the lock for ever
            assert not attempt.is_alive(), "the commit is still waiting on the server"
        assert len(outcome) == 1 and isinstance(outcome[0], sa.exc.OperationalError), outcome
        assert "statement timeout" in str(outcome[0])
        assert not isinstance(outcome[0], SinkRejectedError)  # an outage: no event is dead-lettered for it
        assert sink.load() == Checkpoint()  # nothing of the batch was written
        sink.commit(_batch(0, 10))  # the server answers again: the same batch goes through
        assert sink.load().position == "10-0"
    finally:
        locker.dispose()
