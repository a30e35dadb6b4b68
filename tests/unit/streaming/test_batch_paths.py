"""The stream scorer's batch paths give what the one-event paths give: `parse_batch` what `parse_event`
gives record by record (reasons included), `Windows.add_batch` what `add` gives event by event (sums to
the bit, watermark, late counts, clamping), `bucket_columns` what `bucket_rows` gives, one
`observe_many` what many `observe` calls give, and `ScoredBatch` the results one by one."""

from __future__ import annotations

import json
import math
from functools import cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from flightdeck.data.schema import FEATURES, NUMERIC_FEATURES
from flightdeck.streaming.broker import Backend, Checkpoint, CommitBatch, SinkRejectedError
from flightdeck.streaming.events import (
    Event,
    EventBatch,
    InvalidEventError,
    Record,
    ScoredBatch,
    ScoredEvent,
    parse_batch,
    parse_event,
)
from flightdeck.streaming.feature_drift import FeatureReference
from flightdeck.streaming.metrics import LATENCY_BUCKETS, observe_many
from flightdeck.streaming.models import ModelRouter, StaticModel
from flightdeck.streaming.scorer import ScorerConfig, StreamScorer
from flightdeck.streaming.windows import Windows
from tests.support.models import onnx_model
from tests.unit.streaming.test_events_property import ANY_JSON, _dumps, valid_events
from tests.unit.streaming.test_feature_drift import _profile, _rows


@pytest.fixture(scope="module")
def model_file_bytes() -> bytes:
    return onnx_model(1)


SETTINGS = settings(derandomize=True, max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _one_by_one(records: list[Record]) -> tuple[list[Event], list[tuple[str, str]]]:
    events, dead = [], []
    for record in records:
        try:
            events.append(parse_event(record))
        except InvalidEventError as exc:
            dead.append((record.offset, str(exc)))
    return events, dead


@st.composite
def mixed_records(draw) -> list[Record]:
    """Valid events, valid events with one field replaced by any JSON value, and arbitrary bytes."""
    out = []
    for i in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["valid", "valid", "field", "bytes", "escaped"]))
        body = draw(valid_events())
        if kind == "field":
            body[draw(st.sampled_from(sorted(body)))] = draw(ANY_JSON)
        elif kind == "escaped":  # text with escapes: NUL, a surrogate pair, a lone surrogate
            body[draw(st.sampled_from(["customer_id", "event_id", "housing"]))] = draw(
                st.sampled_from(["a\x00", "\U0001f600", "\ud800", "", "\n"]))
        value = draw(st.binary(max_size=60)) if kind == "bytes" else _dumps(body)
        out.append(Record(f"{i}-0", value, 1_700_000_000.0 + i))
    return out


@settings(SETTINGS, max_examples=25)
@given(mixed_records())
def test_parse_batch_keeps_and_refuses_what_parse_event_does_with_the_same_reasons(records):
    batch, dead = parse_batch(records)
    events, reasons = _one_by_one(records)
    assert [batch.event(i) for i in range(len(batch))] == events
    assert [(d.offset, d.reason) for d in dead] == reasons
    for name in NUMERIC_FEATURES:
        assert batch.columns[name].dtype == np.float64


def test_parse_batch_of_nothing_and_of_only_bad_records():
    assert len(parse_batch([])[0]) == 0
    batch, dead = parse_batch([Record("1-0", b"\xff"), Record("2-0", b'{"customer_id": "a\\u0000"}')])
    assert len(batch) == 0 and [d.offset for d in dead] == ["1-0", "2-0"]
    assert "not JSON" in dead[0].reason and "customer_id" in dead[1].reason


@cache
def _reference_rows():
    """A reference profile, 80 feature rows, their columns and their buckets."""
    reference = FeatureReference(_profile())
    rows = _rows(80)
    columns = EventBatch.of([Event("", "", "", 0.0, row) for row in rows]).columns
    return reference, rows, columns, reference.bucket_columns(columns)


@st.composite
def timed_events(draw) -> list[tuple[float, str, float, float | None]]:
    """(event time, model version, score, arrival) in arrival order: roughly in time, with stragglers
    and events from the future."""
    now, out = 1_700_000_000.0, []
    for _ in range(draw(st.integers(1, 80))):
        now += draw(st.floats(0, 20))
        jitter = draw(st.sampled_from([0.0, 0.0, -draw(st.floats(0, 400)), draw(st.floats(0, 900))]))
        out.append((now + jitter, draw(st.sampled_from(["1", "2"])), draw(st.floats(0, 1)),
                    draw(st.sampled_from([now, None]))))
    return out


@SETTINGS
@given(timed_events(), st.sampled_from([(60, None, 5), (300, 60, 0), (120, 40, 30)]), st.integers(1, 30))
def test_add_batch_equals_adding_one_event_at_a_time(items, shape, batch_size):
    size, slide, lateness = shape
    reference, rows, columns, buckets = _reference_rows()
    has = np.array([version == "1" for _, version, _, _ in items])  # version 2 has no reference

    def windows() -> Windows:
        w = Windows("w", size, slide, lateness, max_future_skew_s=300)
        w.feature_references["1"] = reference
        return w

    single, batched = windows(), windows()
    single_out, batched_out = [], []  # what each batch commits: its records as they are at its end
    for lo in range(0, len(items), batch_size):
        part = slice(lo, min(lo + batch_size, len(items)))
        chunk, records = items[part], []
        for i, (t, version, score, arrival) in enumerate(chunk, lo):
            records += single.add(t, version, score, rows[i], arrival, buckets[i] if has[i] else None)
        single_out += json.loads(json.dumps(records + single.close_ready()))
        late, _ = batched.add_batch([t for t, _, _, _ in chunk], [v for _, v, _, _ in chunk],
                                    [s for _, _, s, _ in chunk], {n: columns[n][part] for n in NUMERIC_FEATURES},
                                    [math.nan if a is None else a for _, _, _, a in chunk], buckets[part], has[part])
        batched_out += json.loads(json.dumps(late + batched.close_ready()))
    assert batched_out == single_out
    assert batched.clamped_total == single.clamped_total and batched.late_total == single.late_total
    assert batched.watermark == single.watermark
    state = json.loads(json.dumps(single.state()))
    other = json.loads(json.dumps(batched.state()))
    assert other == state  # sums to the bit, windows opened in the same order
    assert batched.close_ready() == single.close_ready()


def test_bucket_columns_are_bucket_rows_without_pandas():
    reference = FeatureReference(_profile())
    rows = list(_reference_rows()[1])
    rows[0] = {**rows[0], "housing": "never seen in training", "age": -1e300}
    rows[1] = {**rows[1], "age": 1e300}
    columns = EventBatch.of([Event("", "", "", 0.0, row) for row in rows]).columns
    assert (reference.bucket_columns(columns) == reference.bucket_rows(rows)).all()


def test_one_observe_many_counts_as_many_observes():
    one, many = (Histogram("h", "h", buckets=LATENCY_BUCKETS, registry=CollectorRegistry()) for _ in range(2))
    values = [0.0, 0.001, 0.0011, 0.004, 0.3, 2.5, 2.6, 11.0, 1e9] * 3
    for v in values:
        one.observe(v)
    observe_many(many, values)
    observe_many(many, [])

    def samples(h):
        return {(s.name, s.labels.get("le")): s.value for m in h.collect() for s in m.samples
                if not s.name.endswith("_created")}

    got, expected = samples(many), samples(one)
    assert got.pop(("h_sum", None)) == pytest.approx(expected.pop(("h_sum", None)))
    assert got == expected


def test_a_scored_batch_is_its_results_one_by_one():
    batch = ScoredBatch(["1-0", "2-0"], ["e1", "e2"], ["c\u00e9", "c\n2"], [1.5, 2.0], [0.25, 0.75], [0, 1],
                        ["3", "3"], ["champion", "champion"], [1, 4], [0.25, 0.5])
    events = [ScoredEvent("1-0", "e1", "c\u00e9", 1.5, 0.25, 0, "3", "champion", 1, 0.25),
              ScoredEvent("2-0", "e2", "c\n2", 2.0, 0.75, 1, "3", "champion", 4, 0.5)]
    assert list(batch) == events and batch[1] == events[1] and batch[:1] == events[:1] and len(batch) == 2
    assert batch.json_lines() == [e.to_bytes() for e in events]
    assert [json.loads(line) for line in batch.json_lines()] == [json.loads(e.to_json()) for e in events]
    assert [] + batch == events and batch + [] == events and batch.counts() == {("champion", "3"): 2}
    assert json.loads(events[0].to_json())["entity_id"] == "c\u00e9"


def test_feature_columns_of_a_batch_keep_the_features_order():
    (event,) = [parse_event(Record("1-0", _dumps({"customer_id": "c", "event_time": 5, **_rows(1)[0]})))]
    batch, _ = parse_batch([Record("1-0", _dumps({"customer_id": "c", "event_time": 5, **_rows(1)[0]}))])
    assert list(batch.columns) == list(FEATURES) and batch.event(0) == event


class _RefusingMemory:
    """An in-memory source and a sink that overlaps commits (as the Redis sink does) and refuses any
    batch holding a result of entity "poison" (as a database refuses a value it cannot store)."""

    overlapping_commits = True

    def __init__(self, records: list[Record]) -> None:
        self.records, self.read, self.batches, self.stored = records, 0, [], {}
        self.sink = self

    def seek(self, position, processed=0):
        self.read = processed

    def poll(self, max_records, timeout_s):
        out = self.records[self.read:self.read + max_records]
        self.read += len(out)
        return out

    def lag(self):
        return len(self.records) - self.read

    def load(self):
        return self.batches[-1].checkpoint if self.batches else Checkpoint()

    def entities(self, ids):
        return {i: self.stored[i] for i in ids if i in self.stored}

    def commit(self, batch: CommitBatch):
        if any(r.entity_id == "poison" for r in batch.results):
            raise SinkRejectedError("the sink cannot store entity 'poison'")
        self.batches.append(batch)
        self.stored.update(batch.entities)

    def close(self):
        pass


def test_a_refused_batch_in_flight_is_split_and_the_batch_read_meanwhile_still_committed(model_file_bytes):
    rows = _reference_rows()[1]
    records = [Record(f"{i}-0", _dumps({"customer_id": "poison" if i == 130 else f"c{i % 7}",
                                        "event_time": 1_700_000_000 + i, "event_id": f"e{i}", **rows[i % len(rows)]}),
                      1_700_000_000.0 + i) for i in range(400)]
    memory = _RefusingMemory(records)
    scorer = StreamScorer(Backend(memory, memory), ModelRouter(StaticModel(model_file_bytes, "1"), "m"),
                          [Windows("tumbling", 60)], ScorerConfig(batch_size=100, poll_timeout_s=0))
    stats = scorer.run(idle_stop_s=0)
    results = [r for b in memory.batches for r in b.results]
    dead = [d for b in memory.batches for d in b.dead_letters]
    assert stats.records == 400 and memory.batches[-1].checkpoint.processed == 400
    assert sorted(int(r.event_id[1:]) for r in results) == [i for i in range(400) if i != 130]
    assert [d.offset for d in dead] == ["130-0"] and "cannot store entity 'poison'" in dead[0].reason
    # Entity state went on from the split batch's committed parts, as without the overlap.
    per_entity = {}
    for r in sorted(results, key=lambda r: int(r.event_id[1:])):
        per_entity[r.entity_id] = per_entity.get(r.entity_id, 0) + 1
        assert r.entity_events == per_entity[r.entity_id]
    windows = {(w["start"], w["model_version"]): w for b in memory.batches for w in b.window_records}
    assert sum(w["count"] for w in windows.values()) + sum(
        a.count for a in scorer.windows[0]._open.values()) == 399


def test_a_run_keeps_what_was_loaded_out_of_full_collections_and_gives_it_back_after(model_file_bytes):
    import gc

    rows = _reference_rows()[1]
    records = [Record(f"{i}-0", _dumps({"customer_id": f"c{i % 7}", "event_time": 1_700_000_000 + i,
                                        "event_id": f"e{i}", **rows[i % len(rows)]}), 1_700_000_000.0 + i)
               for i in range(300)]
    memory = _RefusingMemory(records)
    frozen_during = []
    commit = memory.commit
    memory.commit = lambda batch: (frozen_during.append(gc.get_freeze_count()), commit(batch))
    scorer = StreamScorer(Backend(memory, memory), ModelRouter(StaticModel(model_file_bytes, "1"), "m"),
                          [Windows("tumbling", 60)], ScorerConfig(batch_size=100, poll_timeout_s=0))
    gc.unfreeze()  # nothing frozen before the run
    assert scorer.run(idle_stop_s=0).records == 300
    assert len(frozen_during) == 3 and min(frozen_during) > 1000 and gc.get_freeze_count() == 0
    gc.freeze()  # a process that froze its own objects (as the gateway does) keeps them frozen
    try:
        scorer.run(idle_stop_s=0)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
