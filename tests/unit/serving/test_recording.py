"""The cheaper recording path records exactly what the per-request one did: histograms counted
in process export the same buckets and sums as prometheus_client's own `observe`, logged inputs
and their hashes are unchanged, request ids stay unique, shadow requests scored together get
the scores (and disagreements) each would get alone, and the prediction log's memory bound
still returns to zero once rows are written.
"""

from __future__ import annotations

import asyncio
import hashlib
import random

import numpy as np
import orjson
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Histogram

from flightdeck.config import Settings
from flightdeck.serving import db
from flightdeck.serving.gateway import Gateway, _next_request_id, _row_inputs
from flightdeck.serving.metrics import LATENCY_BUCKETS, SCORE_BUCKETS, BatchedHistogram
from flightdeck.serving.models import ModelPool
from flightdeck.serving.predlog import PredictionLogWriter, PredictionRecord
from flightdeck.serving.store import RouteStore
from tests.support.models import MODEL, FakeRegistry, records

TOKEN = "recording-test-token-0123456789abc"


@pytest.mark.parametrize("buckets", [LATENCY_BUCKETS, SCORE_BUCKETS])
def test_batched_histograms_export_what_observe_would(buckets):
    rng = random.Random(3)
    # Values on the bucket bounds too: a value equal to a bound belongs to that bucket.
    values = [rng.random() * 2 for _ in range(500)] + list(buckets) + [0.0, 5.0]
    direct_registry, batched_registry = CollectorRegistry(), CollectorRegistry()
    direct = Histogram("h", "h", ["a"], buckets=buckets, registry=direct_registry).labels("x")
    batched = BatchedHistogram(Histogram("h", "h", ["a"], buckets=buckets, registry=batched_registry).labels("x"))
    for i, value in enumerate(values):
        direct.observe(value)
        if i % 2:
            batched.observe(value)
        else:
            batched.observe_many([value])
        if i % 97 == 0:
            batched.flush()  # flushed at arbitrary points: the totals do not depend on when
    assert _samples(direct_registry) != _samples(batched_registry)  # the last ones are not flushed yet
    batched.flush()
    direct_samples, batched_samples = _samples(direct_registry), _samples(batched_registry)
    # Buckets and count exactly; the sum up to float rounding (it is added up in another order).
    assert direct_samples.pop("h_sum") == pytest.approx(batched_samples.pop("h_sum"), rel=1e-12)
    assert direct_samples == batched_samples


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    return {sample.name + sample.labels.get("le", ""): sample.value for family in registry.collect()
            for sample in family.samples if not sample.name.endswith("_created")}


def _row_inputs_before(columns: dict[str, list], keep: frozenset[str]) -> tuple[list[str], list[str]]:
    """The definition the prediction log's input_hash had before (what stored hashes were made with)."""
    names = sorted(name for name in columns if name in keep)
    ordered = [columns[n] for n in names]
    texts = [orjson.dumps(dict(zip(names, values, strict=True))).decode() for values in zip(*ordered, strict=True)]
    return texts, [hashlib.blake2b(text.encode(), digest_size=16).hexdigest() for text in texts]


@pytest.mark.parametrize("n", [1, 3])
def test_logged_inputs_and_hashes_are_unchanged(n):
    rows = records(n)
    columns = {name: [row[name] for row in rows] for name in reversed(list(rows[0]))}
    columns["caller_extra"] = ["not logged"] * n
    keep = frozenset(rows[0])
    assert _row_inputs(columns, tuple(sorted(keep))) == _row_inputs_before(columns, keep)


def test_request_ids_are_unique_hex_of_uuid_length():
    ids = [_next_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_shadows_scored_together_record_what_each_would_alone(tmp_path):
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    settings = Settings(home=tmp_path, gateway_database_url=url, model_name=MODEL, admin_tokens={"ops": TOKEN},
                        grpc_port=0, predlog_flush_seconds=0.05)
    db.upgrade(url)
    table = {"endpoints": {"credit": {"policy": "single", "variants": {"live": {"version": "1"},
                                                                      "shadow": {"version": "2"}},
                                      "shadow": {"variant": "shadow", "percent": 100}}}}
    RouteStore(db.engine_for(url)).replace(table, author="test")
    requests = [records(n, seed=seed) for seed, n in ((1, 1), (2, 3), (3, 1), (4, 2))]

    async def scenario():
        gateway = Gateway(settings, ModelPool(FakeRegistry()))
        await gateway.start()
        try:
            answers = [await gateway.predict("credit", {k: [r[k] for r in rows] for k in rows[0]}) for rows in requests]
            # All four were mirrored before the shadow task ran: it takes them as one batch.
            while gateway._shadow_queue.qsize() or not any(t.key.role == "shadow" for t in gateway.stats.snapshot()):
                await asyncio.sleep(0.01)
            single = await gateway.predict("credit", {k: [r[k] for r in requests[1]] for k in requests[1][0]},
                                           override="shadow")
            assert gateway.predlog.flush()
            return answers, single, gateway.stats.snapshot()
        finally:
            await gateway.stop()

    answers, forced, sums = asyncio.run(scenario())
    engine = db.engine_for(url)
    with engine.connect() as conn:
        logged = conn.execute(sa.text("SELECT request_id, row_index, role, score FROM predictions "
                                      "WHERE forced = false")).all()
    shadow = {(r.request_id, r.row_index): r.score for r in logged if r.role == "shadow"}
    assert len(shadow) == sum(len(rows) for rows in requests)
    # The second request's shadow scores, batched with the others, equal version 2's own scores.
    second = answers[1].request_id
    np.testing.assert_allclose([shadow[(second, i)] for i in range(3)], forced.scores, rtol=0, atol=1e-12)
    # The running sums count each mirrored request once, with all its rows.
    (shadow_sums,) = [t for t in sums if t.key.role == "shadow"]
    assert (shadow_sums.requests, shadow_sums.rows, shadow_sums.errors) == (len(requests), len(shadow), 0)
    assert shadow_sums.score_sum == pytest.approx(sum(shadow.values()), abs=1e-9)
    db.dispose_engine(url)


def test_the_log_memory_bound_returns_to_zero(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    db.upgrade(str(engine.url))
    writer = PredictionLogWriter(db.engine_for(str(engine.url)), queue_size=1000, batch_size=7, flush_seconds=0.02)
    record = PredictionRecord("r", 0, "u" * 50, "credit", "a", "1", 1, "live", "h", 0.5, 1.0, features="x" * 100)
    writer.start()
    for n in (1, 5, 20, 1):  # chunks larger than a batch are split between batches
        writer.submit(tuple(record._replace(request_id=f"r{n}-{i}", row_index=i) for i in range(n)))
    assert writer.flush()
    writer.close()
    assert (writer.written, writer.dropped, writer._bytes) == (27, 0, 0)
