"""train_register with the Airflow metadata on the local PostgreSQL instead of SQLite."""

from __future__ import annotations

import pytest
import sqlalchemy

pytestmark = pytest.mark.integration


def test_train_register_on_postgres_metadata(postgres_sandbox):
    postgres_sandbox.generate("2026-01-01", "2026-02-20")
    outcome = postgres_sandbox.dag_test(
        "train_register", {"window_start": "2026-01-01", "window_end": "2026-01-25", "labels_as_of": "2026-02-20"})
    assert outcome["state"] == "success", outcome["log"][-4000:]
    assert postgres_sandbox.registry().aliases("flightdeck-classifier") == {"champion": "1", "challenger": "1"}

    engine = sqlalchemy.create_engine(postgres_sandbox.sql_alchemy_conn)
    with engine.connect() as conn:
        state = conn.execute(sqlalchemy.text("SELECT state FROM dag_run WHERE run_id = :run_id"),
                             {"run_id": outcome["run_id"]}).scalar_one()
        tasks = conn.execute(sqlalchemy.text("SELECT count(*) FROM task_instance WHERE run_id = :run_id "
                                             "AND state = 'success'"), {"run_id": outcome["run_id"]}).scalar_one()
    engine.dispose()
    # Every task of the run (the DAG's whole chain, the pipeline's request_releases included)
    # is stored as a success in the PostgreSQL metadata.
    assert set(outcome["tasks"].values()) == {"success"}, outcome["tasks"]
    assert state == "success" and tasks == len(outcome["tasks"])
