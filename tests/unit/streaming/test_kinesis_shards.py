"""The Kinesis adapter's shard order and small parts, on a model of Kinesis' documented reshard semantics
(moto 5.2 keeps writing to a closed parent, so the integration tests cannot show this order)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from flightdeck.errors import ConfigError
from flightdeck.streaming.events import DeadLetter
from flightdeck.streaming.kinesis import (
    DEAD_VALUE_CHARS,
    PAGE_BYTES,
    KinesisBackend,
    _chunks,
    _dead_json,
    read_range,
)


class _Expired(Exception):
    pass


class _Throttled(Exception):
    pass


class _Missing(Exception):
    pass


class KinesisModel:
    """list_shards / get_shard_iterator / get_records as Kinesis documents them after a reshard: a closed
    parent keeps its records, children hold only newer ones, and a closed shard read to its end answers
    without a next iterator."""

    exceptions = SimpleNamespace(ExpiredIteratorException=_Expired, ProvisionedThroughputExceededException=_Throttled,
                                 ResourceNotFoundException=_Missing, InvalidArgumentException=ValueError)

    def __init__(self) -> None:
        self.shards: dict[str, dict] = {}
        self.seq = 0
        self.calls: list[str] = []

    def add(self, shard: str, n: int, parents: tuple[str, ...] = (), closed: bool = False) -> None:
        records = []
        for i in range(n):
            self.seq += 1
            records.append({"SequenceNumber": f"{self.seq:056d}", "Data": f"{shard}/{i}".encode(),
                            "ApproximateArrivalTimestamp": datetime.fromtimestamp(1_700_000_000 + self.seq, UTC),
                            "PartitionKey": "k"})
        self.shards[shard] = {"records": records, "parents": parents, "closed": closed}

    def list_shards(self, StreamName=None, NextToken=None):  # noqa: N803 - boto3's parameter names
        if StreamName != "s":
            raise _Missing(StreamName)
        out = []
        for shard_id, s in self.shards.items():
            entry = {"ShardId": shard_id, "SequenceNumberRange": {"StartingSequenceNumber": "0"}}
            if s["closed"]:
                entry["SequenceNumberRange"]["EndingSequenceNumber"] = "9" * 56
            for key, parent in zip(("ParentShardId", "AdjacentParentShardId"), s["parents"], strict=False):
                entry[key] = parent
            out.append(entry)
        return {"Shards": out}

    def get_shard_iterator(self, StreamName, ShardId, ShardIteratorType, StartingSequenceNumber=None,  # noqa: N803
                           Timestamp=None):
        records = self.shards[ShardId]["records"]
        if ShardIteratorType == "TRIM_HORIZON":
            index = 0
        elif ShardIteratorType == "AFTER_SEQUENCE_NUMBER":
            index = next(i + 1 for i, r in enumerate(records) if r["SequenceNumber"] == StartingSequenceNumber)
        else:  # AT_TIMESTAMP
            index = next((i for i, r in enumerate(records) if r["ApproximateArrivalTimestamp"] >= Timestamp),
                         len(records))
        return {"ShardIterator": f"{ShardId}|{index}"}

    def get_records(self, ShardIterator, Limit):  # noqa: N803
        shard_id, index = ShardIterator.split("|")
        shard, index = self.shards[shard_id], int(index)
        records = shard["records"][index:index + Limit]
        self.calls.append(shard_id)
        end = index + len(records)
        done = shard["closed"] and end == len(shard["records"])
        return {"Records": records, "NextShardIterator": None if done else f"{shard_id}|{end}",
                "MillisBehindLatest": 0 if end == len(shard["records"]) else 1000}


def _backend(model: KinesisModel) -> KinesisBackend:
    backend = KinesisBackend(model, None, "s", "t", "c", "i", lease_s=1e6, relist_s=1e6)
    backend._list_shards()
    backend._renewed = time.monotonic()  # the lease needs no renewal in these tests (no DynamoDB)
    return backend


def _drain(backend: KinesisBackend, limit: int = 7) -> list[str]:
    out = []
    while records := backend.poll(limit, 0):
        out.extend(r.value.decode() for r in records)
    return out


def test_a_split_parent_is_read_to_its_end_before_either_child():
    model = KinesisModel()
    model.add("p", 10, closed=True)
    model.add("c1", 5, parents=("p",))
    model.add("c2", 6, parents=("p",))
    got = _drain(_backend(model))
    assert got[:10] == [f"p/{i}" for i in range(10)]
    assert sorted(got[10:]) == sorted([f"c1/{i}" for i in range(5)] + [f"c2/{i}" for i in range(6)])
    calls = model.calls  # no child was asked for records before the parent's last read
    assert max(i for i, c in enumerate(calls) if c == "p") < min(i for i, c in enumerate(calls) if c != "p")


def test_a_merged_child_waits_for_both_parents():
    model = KinesisModel()
    model.add("a", 4, closed=True)
    model.add("b", 9, closed=True)
    model.add("m", 3, parents=("a", "b"))
    got = _drain(_backend(model), limit=2)
    first_child = next(i for i, v in enumerate(got) if v.startswith("m/"))
    assert first_child == 13 and got[13:] == ["m/0", "m/1", "m/2"]


def test_a_restart_resumes_each_shard_after_its_checkpoint_parents_first():
    model = KinesisModel()
    model.add("p", 10, closed=True)
    model.add("c1", 5, parents=("p",))
    model.add("c2", 6, parents=("p",))
    backend = _backend(model)
    stored = {"p": model.shards["p"]["records"][-1]["SequenceNumber"],
              "c1": model.shards["c1"]["records"][1]["SequenceNumber"]}
    for shard_id, seq in stored.items():
        backend._shards[shard_id].stored = backend._shards[shard_id].read = seq
    got = _drain(backend)
    assert sorted(got) == sorted(["c1/2", "c1/3", "c1/4"] + [f"c2/{i}" for i in range(6)])
    assert backend._shards["p"].ended


def test_the_position_keeps_each_shards_highest_sequence_number():
    model = KinesisModel()
    model.add("a", 3)
    model.add("b", 3)
    backend = _backend(model)
    records = backend.poll(10, 0)
    before = json.dumps({"a": "0", "z": "1"})
    position = json.loads(backend.position(before, records))
    assert position["z"] == "1"
    assert position["a"] == model.shards["a"]["records"][-1]["SequenceNumber"]
    assert position["b"] == model.shards["b"]["records"][-1]["SequenceNumber"]
    assert json.loads(backend.position(json.dumps({"a": "9" * 56}), records))["a"] == "9" * 56


def test_read_range_takes_a_time_range_parents_first():
    model = KinesisModel()
    model.add("p", 4, closed=True)
    model.add("c", 4, parents=("p",))
    every = read_range(model, "s")
    assert [r.value.decode() for r in every] == ["p/0", "p/1", "p/2", "p/3", "c/0", "c/1", "c/2", "c/3"]
    start_ms = int(model.shards["p"]["records"][2]["ApproximateArrivalTimestamp"].timestamp() * 1000)
    end_ms = int(model.shards["c"]["records"][1]["ApproximateArrivalTimestamp"].timestamp() * 1000)
    assert [r.value.decode() for r in read_range(model, "s", str(start_ms), str(end_ms))] == \
        ["p/2", "p/3", "c/0", "c/1"]
    with pytest.raises(ConfigError, match="epoch milliseconds"):
        read_range(model, "s", "0-0")


def test_bad_names_and_sizes_are_refused_with_the_fix():
    model = KinesisModel()
    with pytest.raises(ConfigError, match="not a Kinesis stream name"):
        KinesisBackend(model, None, "flightdeck:events", "t", "c", "i")
    with pytest.raises(ConfigError, match="use 4 to 64"):
        KinesisBackend(model, None, "s", "t", "c", "i", entity_buckets=200)
    with pytest.raises(ConfigError, match="without '#'"):
        KinesisBackend(model, None, "s", "t", "a#b", "i")
    with pytest.raises(ConfigError, match="does not exist"):
        KinesisBackend(model, None, "nope", "t", "c", "i")._list_shards()


def test_pages_stay_under_the_item_limit_and_dead_letters_are_cut():
    lines = ["x" * 1000] * 1000
    chunks = list(_chunks(lines))
    assert sum(len(c) for c in chunks) == 1000 and all(sum(len(x) + 1 for x in c) <= PAGE_BYTES for c in chunks)
    dead = json.loads(_dead_json(DeadLetter("s:1", "not JSON", b"y" * (DEAD_VALUE_CHARS * 3))))
    assert dead["reason"] == "not JSON" and dead["value"].endswith(f"({DEAD_VALUE_CHARS * 3} characters, cut)")


def test_stream_replay_params_name_the_broker():
    from flightdeck.streaming.params import StreamReplayParams

    checked = StreamReplayParams.parse({"broker": "kinesis", "stream": "events", "start": "1700000000000",
                                        "aws_region": "eu-west-1"})
    assert (checked.broker, checked.end, checked.aws_region) == ("kinesis", "+", "eu-west-1")
    assert StreamReplayParams.parse({}).broker == "redis"
    with pytest.raises(ConfigError, match="'redis' or 'kinesis'"):
        StreamReplayParams.parse({"broker": "kafka"})
