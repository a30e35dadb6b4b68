"""Kafka adapter (confluent-kafka): a source, and a transactional consume-transform-produce backend.

`KafkaTransactionalBackend` commits each batch as one Kafka transaction: the result and
dead-letter records, the per-entity state and window state (to a compacted changelog topic,
keyed by consumer), and the consumer group's offsets (`send_offsets_to_transaction`).
Readers of the output topic use `isolation.level=read_committed`, so they never see a
batch that was aborted by a crash. On a rebalance the current transaction is aborted before
partitions are given up; the new owner resumes from the committed offsets.

`KafkaSource` is for the PostgreSQL sink: it `assign`s the partitions and seeks to the
offsets the sink stored in its own transaction (the group's offsets are not the truth there).

CI does not run a Kafka broker (no Docker engine); these paths are tested only when
KAFKA_BOOTSTRAP_SERVERS is set (tests/integration/streaming/test_kafka.py).
"""

from __future__ import annotations

import json
import time

from flightdeck.errors import ConfigError, FlightdeckError
from flightdeck.streaming.broker import Checkpoint, CommitBatch
from flightdeck.streaming.events import Record


def _position(offsets: dict[int, int]) -> str:
    return json.dumps({str(p): o for p, o in sorted(offsets.items())})


def _offsets(position: str | None) -> dict[int, int]:
    return {int(p): int(o) for p, o in json.loads(position).items()} if position else {}


def _records(messages) -> list[Record]:
    records = []
    for message in messages:
        if message.error():
            continue
        _kind, ts = message.timestamp()
        # offset "partition:offset" identifies the record; positions map partition -> next offset
        records.append(Record(offset=f"{message.partition()}:{message.offset()}", value=message.value() or b"",
                              timestamp=ts / 1000 if ts and ts > 0 else None))
    return records


class KafkaSource:
    """Records of one topic's partitions, starting at offsets stored by the sink."""

    def __init__(self, bootstrap: str, topic: str, partitions: list[int] | None = None) -> None:
        from confluent_kafka import Consumer

        self.topic = topic
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"flightdeck-{topic}-assign",
                                  "enable.auto.commit": False, "isolation.level": "read_committed",
                                  "auto.offset.reset": "earliest"})
        if partitions is None:
            meta = self.consumer.list_topics(topic, timeout=10)
            if topic not in meta.topics or meta.topics[topic].error is not None:
                raise ConfigError("topic", f"Kafka topic {topic!r} does not exist", "create it first")
            partitions = sorted(meta.topics[topic].partitions)
        self.partitions = partitions
        self._next: dict[int, int] = {}

    def seek(self, position: str | None, processed: int = 0) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        self._next = _offsets(position)
        self.consumer.assign([TopicPartition(self.topic, p, self._next.get(p, OFFSET_BEGINNING))
                              for p in self.partitions])

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        records = _records(self.consumer.consume(max_records, timeout_s))
        for r in records:
            p, o = r.offset.split(":")
            self._next[int(p)] = int(o) + 1
        return records

    def position(self, previous: str | None, records: list[Record]) -> str:
        """The offsets after `records`, which follow the stored position `previous` (any part of a poll)."""
        offsets = _offsets(previous)
        for r in records:
            p, o = r.offset.split(":")
            offsets[int(p)] = int(o) + 1
        return _position(offsets)

    def lag(self) -> int | None:
        from confluent_kafka import TopicPartition

        total = 0
        for p in self.partitions:
            _low, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=5, cached=True)
            total += max(high - self._next.get(p, 0), 0)
        return total

    def close(self) -> None:
        self.consumer.close()


class StateRestoreError(FlightdeckError):
    """The state topic could not be read to its end in time."""


def ensure_state_topic(bootstrap: str, topic: str) -> None:
    """Create the state topic compacted (cleanup.policy=compact: the newest value of each key is kept
    forever, older ones are cleaned) unless it exists. A topic auto-created by the broker would be
    deleted by age instead, and a restart would lose entity and window state."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic in admin.list_topics(timeout=10).topics:
        return
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=-1,
                                            config={"cleanup.policy": "compact"})])
    try:
        futures[topic].result()
    except Exception as exc:  # noqa: BLE001 - another instance created it first: fine
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise


def read_changelog(reader, topic: str, prefix: str, timeout_s: float = 300.0) -> tuple[dict, int, dict | None]:
    """(entities, processed, windows) under key `prefix` in the state topic, read to its end.

    A partition is read once the consumer's position reaches the end offset taken at the start.
    Not "the last delivered offset + 1": every transaction ends a partition with a commit marker,
    which takes an offset but is never delivered (the position does move past it)."""
    from confluent_kafka import TopicPartition

    entities: dict[str, dict] = {}
    processed, windows = 0, None
    meta = reader.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        return entities, processed, windows
    parts = [TopicPartition(topic, p, 0) for p in meta.partitions]
    ends = {p.partition: reader.get_watermark_offsets(p, timeout=10)[1] for p in parts}
    reader.assign(parts)
    remaining = {p for p, end in ends.items() if end > 0}
    deadline = time.monotonic() + timeout_s
    while remaining:
        for m in reader.consume(1000, 1.0):
            if m.error():
                continue
            key = (m.key() or b"").decode()
            if key.startswith(prefix) and m.value() is not None:
                name = key[len(prefix):]
                value = json.loads(m.value())
                if name == "__checkpoint__":
                    processed, windows = value["processed"], value["windows"]
                else:
                    entities[name.removeprefix("entity:")] = value
        for tp in reader.position([TopicPartition(topic, p) for p in sorted(remaining)]):
            if tp.offset >= ends[tp.partition]:
                remaining.discard(tp.partition)
        if remaining and time.monotonic() > deadline:
            raise StateRestoreError(f"state topic {topic!r}: partitions {sorted(remaining)} not read to their end "
                                    f"within {timeout_s:.0f} s. Fix: check the brokers, then restart the scorer.")
    return entities, processed, windows


class KafkaTransactionalBackend:
    """Kafka in, Kafka out, exactly once: one transaction per batch (see the module docstring)."""

    def __init__(self, bootstrap: str, input_topic: str, output_topic: str, dead_letter_topic: str,
                 state_topic: str, group_id: str, transactional_id: str, alert_topic: str | None = None) -> None:
        from confluent_kafka import Consumer, Producer

        self.input, self.output, self.dead = input_topic, output_topic, dead_letter_topic
        self.state_topic, self.alerts, self.group_id, self.bootstrap = state_topic, alert_topic, group_id, bootstrap
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id,
                                  "enable.auto.commit": False, "isolation.level": "read_committed",
                                  "auto.offset.reset": "earliest", "partition.assignment.strategy": "range"})
        self.producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id,
                                  "linger.ms": 5})
        self._entities: dict[str, dict] = {}
        self._windows: dict | None = None
        self._processed = 0
        self._in_transaction = False

    def _on_revoke(self, consumer, partitions) -> None:
        # Rebalance: give nothing up half-written. The uncommitted batch is re-read by the new owner.
        if self._in_transaction:
            self.producer.abort_transaction()
            self._in_transaction = False

    def start(self) -> Checkpoint:
        self.producer.init_transactions(30)  # fences a zombie with the same transactional.id
        ensure_state_topic(self.bootstrap, self.state_topic)
        self._read_changelog()
        self.consumer.subscribe([self.input], on_revoke=self._on_revoke)
        return Checkpoint(None, self._processed, self._windows)

    def _read_changelog(self) -> None:
        """Rebuild entity and window state from the compacted state topic (read_committed)."""
        from confluent_kafka import Consumer

        reader = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"{self.group_id}-state",
                           "enable.auto.commit": False, "isolation.level": "read_committed"})
        try:
            entities, self._processed, self._windows = read_changelog(reader, self.state_topic, f"{self.group_id}|")
        finally:
            reader.close()
        self._entities.update(entities)

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        return _records(self.consumer.consume(max_records, timeout_s))

    def entities(self, ids: list[str]) -> dict[str, dict]:
        return {i: self._entities[i] for i in ids if i in self._entities}

    def commit(self, batch: CommitBatch) -> None:
        from confluent_kafka import TopicPartition

        p = self.producer
        p.begin_transaction()
        self._in_transaction = True
        for r in batch.results:
            p.produce(self.output, key=r.entity_id, value=r.to_json())
        for d in batch.dead_letters:
            p.produce(self.dead, key=d.offset, value=d.to_json(), headers={"reason": d.reason.encode()})
        for entity, state in batch.entities.items():
            p.produce(self.state_topic, key=f"{self.group_id}|entity:{entity}", value=json.dumps(state))
        cp = batch.checkpoint
        p.produce(self.state_topic, key=f"{self.group_id}|__checkpoint__",
                  value=json.dumps({"processed": cp.processed, "windows": cp.windows}))
        if self.alerts:
            for alert in batch.alerts:
                p.produce(self.alerts, value=json.dumps(alert))
        offsets: dict[int, int] = {}
        for r in batch.results + batch.dead_letters:  # type: ignore[operator]
            part, off = (int(x) for x in r.offset.split(":"))
            offsets[part] = max(offsets.get(part, 0), off + 1)
        p.send_offsets_to_transaction([TopicPartition(self.input, k, v) for k, v in offsets.items()],
                                      self.consumer.consumer_group_metadata(), 30)
        p.commit_transaction(30)
        self._in_transaction = False
        self._entities.update(batch.entities)

    def position(self, previous: str | None, records: list[Record]) -> None:
        return None  # the group's offsets, committed inside each transaction, are the position

    def lag(self) -> int | None:
        total = 0
        for tp in self.consumer.assignment():
            _low, high = self.consumer.get_watermark_offsets(tp, timeout=5, cached=True)
            position = self.consumer.position([tp])[0].offset
            total += max(high - position, 0) if position >= 0 else high
        return total

    def close(self) -> None:
        self.consumer.close()
        self.producer.flush(10)
