"""The Kafka backend's state restore, state topic and transactional ids, against fakes of the
confluent-kafka client (no broker runs here) that model what a broker does with transactions:
each committed transaction ends a partition with a commit marker that takes an offset and is
never delivered to the consumer, whose position nevertheless moves past it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import confluent_kafka
import confluent_kafka.admin
import pytest

from flightdeck.streaming import kafka
from flightdeck.streaming.service import StreamOptions, backend

STATE = "events.scorer-state"


class _Message:
    def __init__(self, partition: int, offset: int, key: str, value: dict) -> None:
        self._p, self._o, self._k, self._v = partition, offset, key.encode(), json.dumps(value).encode()

    def error(self):
        return None

    def partition(self):
        return self._p

    def offset(self):
        return self._o

    def key(self):
        return self._k

    def value(self):
        return self._v


class FakeChangelogConsumer:
    """Partitions of records at given offsets; every other offset below the end is a commit marker."""

    def __init__(self, records: dict[int, dict[int, tuple[str, dict]]], ends: dict[int, int]) -> None:
        self.records, self.ends = records, ends
        self.next = {p: 0 for p in ends}
        self.empty_polls = 0
        self.closed = False

    def list_topics(self, topic, timeout=None):
        meta = SimpleNamespace(partitions={p: None for p in self.ends}, error=None)
        return SimpleNamespace(topics={STATE: meta} if topic == STATE else {})

    def get_watermark_offsets(self, tp, timeout=None, cached=False):
        return 0, self.ends[tp.partition]

    def assign(self, partitions):
        for tp in partitions:
            self.next[tp.partition] = max(tp.offset, 0)

    def consume(self, num_messages=1, timeout=-1):
        out = []
        for p in sorted(self.ends):
            while self.next[p] < self.ends[p] and len(out) < num_messages:
                offset = self.next[p]
                self.next[p] += 1  # a marker is fetched (and skipped) like a record
                if offset in self.records.get(p, {}):
                    out.append(_Message(p, offset, *self.records[p][offset]))
        if not out:
            self.empty_polls += 1
            if self.empty_polls > 50:
                raise AssertionError("the restore keeps polling a partition that has nothing more to deliver")
        return out

    def position(self, partitions):
        return [confluent_kafka.TopicPartition(tp.topic, tp.partition, self.next[tp.partition]) for tp in partitions]

    def close(self):
        self.closed = True


class FakeProducer:
    def __init__(self, config: dict) -> None:
        self.config = config

    def init_transactions(self, timeout=None):
        pass


class FakeAdmin:
    created: list = []
    existing: set = set()

    def __init__(self, config: dict) -> None:
        pass

    def list_topics(self, topic=None, timeout=None):
        return SimpleNamespace(topics={t: SimpleNamespace(error=None) for t in self.existing})

    def create_topics(self, new_topics, **_):
        FakeAdmin.created.extend(new_topics)
        return {t.topic: SimpleNamespace(result=lambda: None) for t in new_topics}


@pytest.fixture
def fakes(monkeypatch):
    """confluent_kafka's Consumer / Producer / AdminClient replaced; returns the changelog reader to use."""
    made = {}

    def consumer(config):
        if config["group.id"].endswith("-state"):
            return made["changelog"]
        return SimpleNamespace(subscribe=lambda *a, **k: None, close=lambda: None, config=config)

    monkeypatch.setattr(confluent_kafka, "Consumer", consumer)
    monkeypatch.setattr(confluent_kafka, "Producer", FakeProducer)
    monkeypatch.setattr(confluent_kafka.admin, "AdminClient", FakeAdmin)
    FakeAdmin.created, FakeAdmin.existing = [], {STATE}
    return made


def _backend(group: str = "scorer-a", transactional_id: str = "tx-a") -> kafka.KafkaTransactionalBackend:
    return kafka.KafkaTransactionalBackend("broker:9092", "events", "scores", "dead", STATE, group, transactional_id)


def test_restore_ends_at_the_commit_markers_and_keeps_the_newest_state(fakes):
    a = "scorer-a|"
    # two transactions on partition 0 (markers at 2 and 5), one on partition 1 (marker at 2),
    # and a partition that holds only an aborted transaction and its marker
    fakes["changelog"] = FakeChangelogConsumer(
        {0: {0: (a + "entity:c1", {"n": 1}), 1: (a + "__checkpoint__", {"processed": 10, "windows": {"w": 1}}),
             3: (a + "entity:c1", {"n": 2}), 4: (a + "__checkpoint__", {"processed": 20, "windows": {"w": 2}})},
         1: {0: ("scorer-b|entity:c9", {"n": 9}), 1: (a + "entity:c2", {"n": 5})}},
        ends={0: 6, 1: 3, 2: 2})
    backend = _backend()
    checkpoint = backend.start()
    assert (checkpoint.processed, checkpoint.windows) == (20, {"w": 2})
    assert backend.entities(["c1", "c2", "c9"]) == {"c1": {"n": 2}, "c2": {"n": 5}}  # c9 is another scorer's
    assert fakes["changelog"].closed


def test_an_empty_state_topic_restores_nothing(fakes):
    fakes["changelog"] = FakeChangelogConsumer({}, ends={0: 0})
    assert _backend().start().processed == 0


def test_the_state_topic_is_created_compacted(fakes):
    fakes["changelog"] = FakeChangelogConsumer({}, ends={0: 0})
    FakeAdmin.existing = {"events"}
    _backend().start()
    assert [(t.topic, t.config.get("cleanup.policy")) for t in FakeAdmin.created] == [(STATE, "compact")]


def test_each_scorer_instance_gets_its_own_transactional_id(fakes):
    ids = [backend(StreamOptions(broker="kafka", kafka_bootstrap="broker:9092", consumer="scorer",
                                 instance_id=i)).producer.config["transactional.id"] for i in ("host-1", "host-2")]
    assert len(set(ids)) == 2 and all(i.startswith("flightdeck-scorer-") for i in ids)
    again = backend(StreamOptions(broker="kafka", kafka_bootstrap="broker:9092", consumer="scorer",
                                  instance_id="host-1")).producer.config["transactional.id"]
    assert again == ids[0]  # a restarted instance fences its own zombie
