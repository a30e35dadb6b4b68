"""Kafka adapter against a real broker: runs only when KAFKA_BOOTSTRAP_SERVERS is set (compose's Kafka)."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from flightdeck.streaming.models import ModelRouter, StaticModel
from flightdeck.streaming.scorer import ScorerConfig, StreamScorer
from flightdeck.streaming.windows import Windows
from tests.integration.streaming.conftest import events
from tests.support.models import onnx_model

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
pytestmark = [pytest.mark.integration, pytest.mark.timeout(120),
              pytest.mark.skipif(not BOOTSTRAP, reason="KAFKA_BOOTSTRAP_SERVERS is not set: no Kafka broker "
                                 "here (CI runs the Redis Streams adapter; docker compose provides Kafka)")]


def test_kafka_transactions_give_one_result_per_event_across_a_restart(base_events):
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from flightdeck.streaming.kafka import KafkaTransactionalBackend

    name = f"fd-{uuid.uuid4().hex[:8]}"
    topics = {t: f"{name}-{t}" for t in ("in", "out", "dead", "state")}
    AdminClient({"bootstrap.servers": BOOTSTRAP}).create_topics(
        [NewTopic(t, 2, 1) for t in topics.values()])
    producer = Producer({"bootstrap.servers": BOOTSTRAP})
    values = events(base_events, 2000)
    values[5] = b"poison"
    for v in values:
        producer.produce(topics["in"], v)
    producer.flush(30)

    def scorer():
        backend = KafkaTransactionalBackend(BOOTSTRAP, topics["in"], topics["out"], topics["dead"], topics["state"],
                                            name, f"{name}-tx")
        return StreamScorer(backend, ModelRouter(StaticModel(onnx_model(1), "1"), "m"),
                            [Windows("tumbling", 60)], ScorerConfig(batch_size=300, poll_timeout_s=1.0))

    scorer().run(max_records=900)  # stops mid-stream; the second scorer resumes from committed offsets
    scorer().run(idle_stop_s=5)
    reader = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"{name}-check", "auto.offset.reset": "earliest",
                       "isolation.level": "read_committed"})
    reader.subscribe([topics["out"]])
    ids = []
    for _ in range(60):
        ids += [json.loads(m.value())["event_id"] for m in reader.consume(1000, 1.0) if not m.error()]
        if len(ids) >= 1999:
            break
    reader.close()
    assert len(ids) == 1999 and len(set(ids)) == 1999
