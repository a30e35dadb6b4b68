"""Windows, watermark, late-event accounting and event validation (no broker)."""

from __future__ import annotations

import json

import pytest

from flightdeck.data.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from flightdeck.errors import ConfigError
from flightdeck.streaming.events import InvalidEventError, Record, parse_event
from flightdeck.streaming.windows import Windows

FEATS = {**{name: 1.0 for name in NUMERIC_FEATURES}, **{name: "x" for name in CATEGORICAL_FEATURES}}


def test_sliding_window_starts_cover_the_event():
    w = Windows("sliding", 300, 60)
    starts = w.starts(1000.0)
    assert sorted(starts) == [720.0, 780.0, 840.0, 900.0, 960.0]
    assert all(s <= 1000.0 < s + 300 for s in starts)
    assert Windows("tumbling", 60).starts(1000.0) == [960.0]


def test_windows_close_at_the_watermark_and_count_late_events():
    w = Windows("tumbling", 60, allowed_lateness_s=10)
    for t in (5.0, 30.0, 59.0):
        w.add(t, "1", 0.25, FEATS)
    assert w.close_ready() == []  # watermark 49: window [0, 60) still open
    w.add(75.0, "1", 0.75, FEATS)  # watermark 65 passes 60
    closed = w.close_ready()
    assert [(r["start"], r["count"], r["late_events"]) for r in closed] == [(0.0, 3, 0)]
    assert closed[0]["score_mean"] == pytest.approx(0.25)
    reemitted = w.add(20.0, "1", 0.9, FEATS)  # belongs to the closed window: late
    assert [(r["start"], r["count"], r["late_events"]) for r in reemitted] == [(0.0, 3, 1)]
    w.add(64.0, "1", 0.5, FEATS)  # within allowed lateness of [60, 120): not late
    assert w.late_total == 1


def test_window_state_survives_a_restart():
    w = Windows("sliding", 120, 60, allowed_lateness_s=0)
    for t in (10.0, 70.0, 130.0):
        w.add(t, "2", 0.5, FEATS)
    restored = Windows("sliding", 120, 60, allowed_lateness_s=0)
    restored.restore(json.loads(json.dumps(w.state())))
    assert restored.watermark == w.watermark
    assert restored.close_ready() == w.close_ready()


def test_bad_window_definition_is_a_config_error():
    with pytest.raises(ConfigError, match="slide"):
        Windows("sliding", 60, 120)


def _record(body) -> Record:
    return Record("1-0", json.dumps(body).encode())


def test_parse_event_accepts_a_complete_event():
    body = {"customer_id": "C1", "event_time": "2026-02-01T00:00:10+00:00", **FEATS}
    event = parse_event(_record(body))
    assert event.entity_id == "C1" and event.event_id == "1-0"
    assert event.event_time == pytest.approx(1_769_904_010.0)


@pytest.mark.parametrize(("body", "reason"), [
    (None, "not a JSON object"),
    ({"event_time": 1}, "customer_id"),
    ({"customer_id": "C1", "event_time": 1, **FEATS, "age": "old"}, "'age' must be a finite number"),
    ({"customer_id": "C1", "event_time": "yesterday", **FEATS}, "event_time"),
])
def test_parse_event_names_the_reason(body, reason):
    with pytest.raises(InvalidEventError, match=reason):
        parse_event(_record(body))
    with pytest.raises(InvalidEventError, match="not JSON"):
        parse_event(Record("1-0", b"\xff{"))


def test_a_far_future_event_time_is_clamped_to_arrival_plus_skew_and_counted():
    w = Windows("tumbling", 60, allowed_lateness_s=5, max_future_skew_s=30)
    w.add(1030.0, "1", 0.5, FEATS, arrival=1030.0)
    w.add(1e12, "1", 0.5, FEATS, arrival=1031.0)  # a device clock 30,000 years ahead
    assert w.clamped_total == 1 and w.max_event_time == 1061.0  # arrival + skew, not 1e12
    assert w.add(1032.0, "1", 0.5, FEATS, arrival=1032.0) == [] and w.late_total == 0  # still on time
    assert [(r["start"], r["count"]) for r in w.close_ready()] == []  # [1020, 1080) stays open
    w.add(1059.0, "1", 0.5, FEATS, arrival=1050.0)  # ahead of arrival, within the skew: kept as is
    assert w.clamped_total == 1 and w.max_event_time == 1061.0
    restored = Windows("tumbling", 60, allowed_lateness_s=5, max_future_skew_s=30)
    restored.restore(json.loads(json.dumps(w.state())))
    assert restored.clamped_total == 1


def test_without_arrival_or_with_the_clamp_off_event_times_are_taken_as_they_are():
    w = Windows("tumbling", 60, allowed_lateness_s=5, max_future_skew_s=None)
    w.add(1e9, "1", 0.5, FEATS, arrival=1000.0)
    assert w.clamped_total == 0 and w.max_event_time == 1e9
    w = Windows("tumbling", 60, allowed_lateness_s=5)
    w.add(1e9, "1", 0.5, FEATS)
    assert w.max_event_time == 1e9
