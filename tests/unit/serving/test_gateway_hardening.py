"""Gateway hardening that needs no server: the prediction log's loss counters stay visible while
the database fails, the log and shadow queues are bounded by bytes as well as rows, and the
settings refuse placeholder admin tokens."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import sqlalchemy as sa

from flightdeck.config import Settings
from flightdeck.serving import db
from flightdeck.serving import gateway as gateway_module
from flightdeck.serving.gateway import Gateway
from flightdeck.serving.models import ModelPool
from flightdeck.serving.predlog import PredictionLogWriter, PredictionRecord
from flightdeck.serving.stats import StatsKey
from flightdeck.serving.store import RouteStore
from tests.support.models import FakeRegistry, records


def test_log_loss_counters_are_exported_while_the_stats_write_fails(tmp_path):
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    db.upgrade(url)
    gateway = Gateway(Settings(home=tmp_path / "home", gateway_database_url=url, grpc_port=0),
                      ModelPool(FakeRegistry()))
    gateway.predlog = PredictionLogWriter(gateway.engine, queue_size=2, batch_size=1, flush_seconds=0.01,
                                          retries=0)
    with db.write_transaction(gateway.engine) as conn:  # the database loses both tables
        conn.execute(sa.text("DROP TABLE predictions"))
        conn.execute(sa.text("DROP TABLE variant_stats"))
    record = PredictionRecord("r1", 0, None, "e", "a", "1", 1, "live", "h", 0.5, 1.0)
    gateway.predlog.start()
    assert gateway.predlog.submit([record] * 3) == 2  # one dropped: the queue holds two
    assert gateway.predlog.flush(timeout=10)
    gateway.stats.record(StatsKey("e", "a", "1", 1, "live"), 0.001, np.array([0.5]))

    with pytest.raises(sa.exc.OperationalError):
        gateway._publish_once()
    sample = gateway.metrics.registry.get_sample_value
    assert sample("flightdeck_prediction_log_failed") == 2
    assert sample("flightdeck_prediction_log_dropped") == 1
    assert sample("flightdeck_prediction_log_written") == 0
    gateway.predlog.close(timeout=1)
    db.dispose_engine(url)


def test_the_log_queue_is_bounded_by_bytes_as_well_as_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    db.upgrade(url)
    big = "x" * 10_000
    rows = [PredictionRecord(f"r{i}", 0, None, "e", "a", "1", 1, "live", "h", 0.5, 1.0, features=big)
            for i in range(10)]
    writer = PredictionLogWriter(db.engine_for(url), queue_size=1000, batch_size=100, flush_seconds=0.01,
                                 queue_bytes=35_000)
    try:
        assert writer.submit(rows) == 3  # 10 rows fit the row bound; about 3.4 fit the byte bound
        assert writer.dropped == 7
        writer.start()
        assert writer.flush(timeout=10)
        assert writer.submit(rows[:3]) == 3  # written rows give their bytes back
        assert writer.flush(timeout=10)
        assert (writer.written, writer.dropped) == (6, 7)
    finally:
        writer.close(timeout=1)
        db.dispose_engine(url)


def test_the_shadow_queue_is_bounded_by_bytes_and_holds_only_the_model_inputs(tmp_path):
    """The byte bound is the setting shadow_queue_bytes (FLIGHTDECK_SHADOW_QUEUE_BYTES)."""
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    db.upgrade(url)
    table = {"endpoints": {"credit": {"policy": "single", "variants": {"live": {"version": "1"},
                                                                      "shadow": {"version": "2"}},
                                      "shadow": {"variant": "shadow", "percent": 100}}}}
    RouteStore(db.engine_for(url)).replace(table, author="test")
    rows = records(1)
    row_bytes = len(gateway_module.orjson.dumps(rows[0]))  # the logged JSON of the model inputs
    gateway = Gateway(Settings(home=tmp_path / "home", gateway_database_url=url, grpc_port=0,
                               cache_backend="off", shadow_queue_size=1000,
                               shadow_queue_bytes=3 * row_bytes + row_bytes // 2), ModelPool(FakeRegistry()))
    columns = {name: [value] for name, value in rows[0].items()} | {"caller_extra": ["x" * 100_000]}

    async def scenario() -> int:
        await gateway.refresh_routes()  # no background loops: nothing drains the queue yet
        for _ in range(5):  # the extra column is not counted: three fit the byte bound, not five
            assert (await gateway.predict("credit", columns)).variant == "live"
        assert gateway._shadow_queue.qsize() == 3
        assert set(gateway._shadow_queue.get_nowait().columns) == set(rows[0])  # no caller extras held
        drain = asyncio.create_task(gateway._drain_shadow())
        try:
            async with asyncio.timeout(10):
                # every byte given back but those of the request taken by hand above
                while gateway._shadow_queue.qsize() or gateway._shadow_bytes != row_bytes:
                    await asyncio.sleep(0.01)
            assert (await gateway.predict("credit", columns)).variant == "live"  # room again
            return gateway._shadow_queue.qsize() + sum(
                t.requests for t in gateway.stats.snapshot() if t.key.role == "shadow")
        finally:
            drain.cancel()

    assert asyncio.run(scenario()) == 3  # the two left after the one taken by hand, and the one let in again
    assert gateway.metrics.registry.get_sample_value("flightdeck_shadow_dropped_total",
                                                     {"endpoint": "credit"}) == 2
    db.dispose_engine(url)


@pytest.mark.parametrize(("token", "problem"), [
    ("change-me-ops-token-0123456789", "placeholder"),
    ("short-token-1234", "shorter than 24 characters"),
])
def test_the_gateway_refuses_to_start_with_a_weak_admin_token(tmp_path, token, problem):
    from flightdeck.errors import ConfigError
    from flightdeck.serving.server import prepare

    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    settings = Settings(home=tmp_path / "home", gateway_database_url=url, grpc_port=0,
                        admin_tokens={"ok": "a" * 24, "ops": token})
    for start in (lambda: Gateway(settings, ModelPool(FakeRegistry())), lambda: prepare(settings)):
        with pytest.raises(ConfigError) as refused:
            start()
        message = str(refused.value)
        assert "FLIGHTDECK_ADMIN_TOKENS" in message and "'ops'" in message and problem in message
        assert token not in message  # the error never echoes a secret
    db.dispose_engine(url)


def test_a_long_random_admin_token_is_accepted(tmp_path):
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    db.upgrade(url)
    settings = Settings(home=tmp_path / "home", gateway_database_url=url, grpc_port=0,
                        admin_tokens={"ops": "Zq3-" * 8})
    assert Gateway(settings, ModelPool(FakeRegistry())).settings is settings
    db.dispose_engine(url)
