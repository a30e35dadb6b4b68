"""Migration 0004: the prediction log's `client_request_id` is indexed on SQLite and PostgreSQL, and the
lookup of a request by the caller's id (`predlog_reads.predictions_for_request`) reads that index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command

from flightdeck.serving import db
from flightdeck.serving.predlog import PredictionRecord, _insert_rows
from flightdeck.serving.predlog_reads import predictions_for_request, request_query

INDEX = "ix_predictions_client_request_id"
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _indexes(engine) -> dict[str, list[str]]:
    return {ix["name"]: ix["column_names"] for ix in sa.inspect(engine).get_indexes("predictions")}


def test_upgrade_creates_the_index_and_downgrade_drops_it(gateway_db_url):
    db.upgrade(gateway_db_url)
    engine = db.engine_for(gateway_db_url)
    assert db.current_revision(engine) == db.head_revision() >= "0004"  # 0004 or a later head
    assert _indexes(engine)[INDEX] == ["client_request_id"]
    with db.write_transaction(engine) as conn:
        config = db._alembic_config(gateway_db_url)
        config.attributes["connection"] = conn
        command.downgrade(config, "0003")
    assert INDEX not in _indexes(engine) and "ix_predictions_request_id" in _indexes(engine)
    db.upgrade(gateway_db_url)
    assert _indexes(engine)[INDEX] == ["client_request_id"]


def _fill(engine, n: int = 3000) -> None:
    records = [PredictionRecord(f"gw-{i}", 0, f"u{i % 50}", "credit", "a", "1", 1, "live", "h", 0.1, 2.0,
                                created_at=T0 + timedelta(seconds=i), client_request_id=f"caller-{i}")
               for i in range(n)]
    records.append(PredictionRecord("gw-shadow-7", 0, "u7", "credit", "b", "2", 1, "shadow", "h", 0.3, 2.0,
                                    created_at=T0 + timedelta(seconds=7), client_request_id="caller-7"))
    with db.write_transaction(engine) as conn:
        _insert_rows(conn, [(T0, records)])
        conn.execute(sa.text("ANALYZE"))


def _plan(engine, request_id: str) -> str:
    query = request_query(request_id, ["request_id", "role"])
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as conn:
        return "\n".join(" ".join(str(v) for v in row) for row in conn.execute(sa.text(explain + sql)))


def test_a_lookup_by_the_callers_id_reads_the_index(gateway_engine):
    _fill(gateway_engine)
    found = predictions_for_request(gateway_engine, "caller-7", ["request_id", "role", "client_request_id"])
    assert found["request_id"].tolist() == ["gw-7", "gw-shadow-7"]  # the live row and its shadow
    assert predictions_for_request(gateway_engine, "gw-9", ["request_id"])["request_id"].tolist() == ["gw-9"]
    assert predictions_for_request(gateway_engine, "nobody", ["request_id"]).empty
    plan = _plan(gateway_engine, "caller-7")
    assert INDEX in plan and "ix_predictions_request_id" in plan, plan
    assert "SCAN predictions" not in plan and "Seq Scan" not in plan, plan
