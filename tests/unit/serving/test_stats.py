"""Running sums: the in-process accumulator and the summary maths (SQLite in a tmp folder)."""

from __future__ import annotations

import json
import math
import threading
import time

import numpy as np
import pytest

from flightdeck.delivery.sources.gateway import window_from_stats
from flightdeck.serving import db
from flightdeck.serving.stats import RunningStats, StatsKey, StatsStore, StatTotals, mean_std

A1 = StatsKey("default", "a", "3", 1, "live")
A2 = StatsKey("default", "a", "3", 2, "live")
B2 = StatsKey("default", "b", "4", 2, "live")


@pytest.fixture
def store(tmp_path):
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    db.upgrade(url)
    yield StatsStore(db.engine_for(url))
    db.dispose_engine(url)


def totals_of(stats: RunningStats) -> dict:
    return {t.key: t for t in stats.snapshot()}


def test_record_accumulates_counts_and_sums_per_key():
    stats = RunningStats()
    stats.record(A1, 0.010, np.array([0.2, 0.4]))
    stats.record(A1, 0.030, np.array([0.6]))
    stats.record(A1, 0.020, np.empty(0), error=True)
    stats.record(B2, 0.5, np.array([1.0]))

    totals = totals_of(stats)
    a = totals[A1]
    assert (a.requests, a.errors, a.rows) == (3, 1, 3)
    assert a.latency_sum == pytest.approx(0.06) and a.latency_sumsq == pytest.approx(0.0014)
    assert a.score_sum == pytest.approx(1.2) and a.score_sumsq == pytest.approx(0.56)
    assert a.score_bins == (0, 0, 1, 0, 1, 0, 1, 0, 0, 0)
    assert totals[B2] == StatTotals(B2, 1, 0, 0.5, 0.25, 1, 1.0, 1.0, (0,) * 9 + (1,), 0)


def test_score_bins_agree_between_the_small_and_the_numpy_path():
    rng = np.random.default_rng(3)
    scores = rng.random(500)
    small, large = RunningStats(), RunningStats()
    for value in scores:
        small.record(A1, 0.001, np.array([value]))
    large.record(A1, 0.001, scores)

    expected = tuple(np.histogram(scores, bins=np.linspace(0, 1, 11))[0].tolist())
    assert totals_of(small)[A1].score_bins == totals_of(large)[A1].score_bins == expected


def test_shadow_disagreements_are_summed_and_published(store):
    shadow = StatsKey("default", "b", "4", 2, "shadow")
    stats = RunningStats()
    stats.record(shadow, 0.01, np.array([0.9, 0.1, 0.8]), disagreements=2)
    stats.record(shadow, 0.01, np.array([0.7]), disagreements=1)
    store.publish("w1", stats.snapshot())

    (item,) = store.summary("default", role="shadow")
    assert (item.rows, item.disagreements) == (4, 3)
    assert item.score_bins == [0, 1, 0, 0, 0, 0, 0, 1, 1, 1]
    window = window_from_stats(item.to_dict())
    assert (window.shadow_rows, window.shadow_disagreements, window.rows) == (4, 3, 4)


def test_snapshot_is_absolute_and_detached():
    stats = RunningStats()
    stats.record(A1, 0.01, np.array([0.5]))
    first = stats.snapshot()
    stats.record(A1, 0.01, np.array([0.5]))

    assert first[0].requests == 1
    assert stats.snapshot()[0].requests == 2
    assert RunningStats().snapshot() == []


def test_record_from_one_thread_while_another_snapshots():
    stats = RunningStats()
    done = threading.Event()
    seen: list[int] = []

    def flusher() -> None:
        while not done.is_set():
            for t in stats.snapshot():
                # A consistent snapshot: every request so far had exactly two rows.
                assert t.rows == 2 * t.requests
                seen.append(t.requests)
            time.sleep(0.0005)

    thread = threading.Thread(target=flusher)
    thread.start()
    scores = np.array([0.25, 0.75])
    for _ in range(5_000):
        stats.record(A1, 0.001, scores)
    done.set()
    thread.join()

    assert totals_of(stats)[A1].requests == 5_000
    assert seen == sorted(seen)


@pytest.mark.parametrize(("values", "mean", "std"), [
    ([], None, None),
    ([3.0], 3.0, None),
    ([1.0, 3.0], 2.0, math.sqrt(2.0)),
    ([0.1] * 7, 0.1, 0.0),  # rounding must not make the variance negative
])
def test_mean_std(values, mean, std):
    array = np.array(values)
    got_mean, got_std = mean_std(len(values), float(array.sum()), float(array @ array))

    assert got_mean == (None if mean is None else pytest.approx(mean))
    assert got_std == (None if std is None else pytest.approx(std, abs=1e-6))


def test_summary_sums_workers_and_route_versions(store):
    w1, w2 = RunningStats(), RunningStats()
    rng = np.random.default_rng(0)
    all_scores: list[float] = []
    all_latencies: list[float] = []
    for stats in (w1, w2):
        for key in (A1, A2):
            for _ in range(25):
                scores = rng.random(3)
                latency = float(rng.uniform(0.001, 0.05))
                stats.record(key, latency, scores)
                all_scores.extend(scores)
                all_latencies.append(latency)
    w2.record(A2, 0.1, np.empty(0), error=True)
    all_latencies.append(0.1)
    w1.record(B2, 0.2, np.array([0.5]))
    store.publish("w1", w1.snapshot())
    store.publish("w2", w2.snapshot())

    a, b = store.summary("default")
    assert (a.variant, a.model_version, a.requests, a.errors, a.rows, a.workers) == ("a", "3", 101, 1, 300, 2)
    assert a.error_rate == pytest.approx(1 / 101)
    assert a.score_mean == pytest.approx(np.mean(all_scores))
    assert a.score_std == pytest.approx(np.std(all_scores, ddof=1))
    assert a.latency_mean_s == pytest.approx(np.mean(all_latencies))
    assert a.latency_std_s == pytest.approx(np.std(all_latencies, ddof=1))
    assert (b.variant, b.requests, b.score_mean, b.score_std, b.workers) == ("b", 1, 0.5, None, 1)

    a_since_2 = store.summary("default", since_route_version=2)[0]
    assert (a_since_2.requests, a_since_2.rows) == (51, 150)
    assert store.summary("default", since_route_version=3) == []
    assert store.summary("default", role="shadow") == []
    assert store.summary("elsewhere") == []


def test_publish_is_idempotent_and_keeps_absolute_totals(store):
    stats = RunningStats()
    stats.record(A1, 0.01, np.array([0.5]))
    store.publish("w1", stats.snapshot())
    once = store.summary_as_dict("default")
    store.publish("w1", stats.snapshot())
    store.publish("w1", [])

    assert store.summary_as_dict("default") == once
    stats.record(A1, 0.01, np.array([0.5]))
    store.publish("w1", stats.snapshot())
    assert store.summary("default")[0].requests == 2  # replaced, not added


def test_summary_is_json_serialisable(store):
    stats = RunningStats()
    stats.record(A1, 0.01, np.empty(0), error=True)
    store.publish("w1", stats.snapshot())

    (item,) = store.summary_as_dict("default")
    assert json.loads(json.dumps(item)) == item
    assert item["score_mean"] is None and item["error_rate"] == 1.0 and item["updated_at"].endswith("+00:00")


def test_summary_rejects_an_unknown_role(store):
    with pytest.raises(ValueError, match="role"):
        store.summary("default", role="canary")
