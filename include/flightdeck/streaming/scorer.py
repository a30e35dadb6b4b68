"""The stream scorer: poll a batch, validate, score with the one ONNX function, commit atomically.

The loop is synchronous on purpose: poll at most `batch_size` records → score → commit →
poll again. Nothing is in flight beyond one batch, so a slow sink or model slows the
reads (backpressure: unread records wait in the broker, memory stays bounded) and a crash
loses at most an uncommitted batch, which is re-read from the stored position on restart.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from flightdeck import runtime
from flightdeck.errors import ConfigError
from flightdeck.streaming.broker import (
    Backend,
    Checkpoint,
    CommitBatch,
    FencedError,
    SinkRejectedError,
)
from flightdeck.streaming.events import DeadLetter, EventBatch, Record, ScoredEvent, parse_batch
from flightdeck.streaming.feature_drift import ALERT_KINDS, FeatureReference, drift_alert
from flightdeck.streaming.metrics import StreamMetrics, observe_many
from flightdeck.streaming.models import ModelRouter
from flightdeck.streaming.windows import Windows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScorerConfig:
    """Knobs of one scorer process."""

    endpoint: str = "stream"  # the metrics' endpoint label
    batch_size: int = 500  # records per poll and per commit: bounds memory and the redo after a crash
    poll_timeout_s: float = 0.5
    threshold: float = 0.5
    entity_alpha: float = 0.2  # weight of the newest score in the entity's rolling mean
    entity_cache: int = 100_000  # entity states kept in memory (the rest are read from the sink)
    drift_alert_psi: float = 0.2  # a window alerts when its score's or any feature's PSI crosses this

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError("batch_size", f"{self.batch_size}", "use at least 1")
        if not 0 < self.entity_alpha <= 1:
            raise ConfigError("entity_alpha", f"{self.entity_alpha}", "use 0 < alpha <= 1")


@dataclass
class RunStats:
    records: int = 0
    scored: int = 0
    dead_letters: int = 0
    batches: int = 0


class StreamScorer:
    """Scores a backend's records into its sink with exactly-once commits."""

    def __init__(self, backend: Backend, models: ModelRouter, windows: list[Windows],
                 config: ScorerConfig | None = None, metrics: StreamMetrics | None = None) -> None:
        self.backend, self.models, self.windows = backend, models, windows
        self.config = config or ScorerConfig()
        self.metrics = metrics or StreamMetrics()
        self.stop_event = threading.Event()
        # model version -> its training reference profile, shared with every window definition
        self.feature_references: dict[str, FeatureReference] = {}
        for w in windows:
            w.feature_references = self.feature_references
        self._entities: OrderedDict[str, dict] = OrderedDict()
        self._checkpoint = Checkpoint()
        self._lag_at = -float('inf')

    def start(self) -> Checkpoint:
        """Load the stored checkpoint, restore windows and seek the source right after it."""
        self._checkpoint = self.backend.start()
        self._rewind()
        self._refresh_models(force=True)
        log.info("stream scorer resumes after %s (%d records so far)", self._checkpoint.position,
                 self._checkpoint.processed)
        return self._checkpoint

    def _refresh_models(self, force: bool = False) -> None:
        before = self.models.switches
        self.models.refresh(force)
        if self.models.switches > before:
            self.metrics.model_switches.labels(self.config.endpoint).inc(self.models.switches - before)

    def install_signal_handlers(self) -> None:
        """SIGTERM / SIGINT finish the current batch, commit it and stop."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop_event.set())

    def run(self, max_records: int | None = None, idle_stop_s: float | None = None) -> RunStats:
        """Process until stopped, `max_records` processed, or no record for `idle_stop_s`."""
        self.start()
        stats = RunStats()
        idle_since = time.monotonic()
        while not self.stop_event.is_set():
            if max_records is not None and stats.records >= max_records:
                break
            limit = self.config.batch_size if max_records is None else min(self.config.batch_size,
                                                                           max_records - stats.records)
            records = self.backend.poll(limit, self.config.poll_timeout_s)
            if not records:
                if idle_stop_s is not None and time.monotonic() - idle_since >= idle_stop_s:
                    break
                self._report_lag()
                continue
            idle_since = started = time.monotonic()
            self._refresh_models()
            try:
                batch = self._commit(records)
            except FencedError as exc:
                log.warning("%s", exc)
                self.start()  # re-read from the position the other scorer stored
                continue
            done = time.time()
            stats.records += len(records)
            stats.scored += len(batch.results)
            stats.dead_letters += len(batch.dead_letters)
            stats.batches += 1
            self._observe(batch, records, done, time.monotonic() - started)
        self.backend.close()
        return stats

    # -- one batch ---------------------------------------------------------------------------
    def _commit(self, records: list[Record]) -> CommitBatch:
        """Process and commit `records`; when the sink refuses the batch's content, split it until the
        record at fault is alone and dead-letter that one. Returns what was committed, merged."""
        batch = self.process(records)
        try:
            self.backend.commit(batch)
        except SinkRejectedError as exc:
            self._rewind()
            if len(records) == 1:
                return self._commit_refused(records[0], exc)
            half = len(records) // 2
            first, second = self._commit(records[:half]), self._commit(records[half:])
            return CommitBatch(first.results + second.results, first.dead_letters + second.dead_letters,
                               {**first.entities, **second.entities}, first.window_records + second.window_records,
                               second.checkpoint, first.alerts + second.alerts)
        self._checkpoint = batch.checkpoint
        return batch

    def _commit_refused(self, record: Record, exc: SinkRejectedError) -> CommitBatch:
        dead = DeadLetter(record.offset, f"{exc}. Fix: send values the sink can store, then publish the "
                                         "event again.", record.value)
        batch = CommitBatch([], [dead], {}, [], self._next_checkpoint([record]))
        self.backend.commit(batch)  # a dead letter refused too means the sink itself is wrong: stop
        self._checkpoint = batch.checkpoint
        return batch

    def _rewind(self) -> None:
        """Forget what was processed after the stored checkpoint: windows back to it, entity states
        read again from the sink."""
        for w in self.windows:
            state = (self._checkpoint.windows or {}).get(w.kind)
            w.restore(state) if state else w.reset()
        self._entities.clear()

    def _next_checkpoint(self, records: list[Record]) -> Checkpoint:
        return Checkpoint(self.backend.position(self._checkpoint.position, records),
                          self._checkpoint.processed + len(records), {w.kind: w.state() for w in self.windows})

    def process(self, records: list[Record]) -> CommitBatch:
        """Turn records into one CommitBatch (no I/O besides reading entity state).

        Column by column: one decode-and-check pass (`parse_batch`), one model call per variant,
        the feature buckets and window sums with numpy; Python objects per event are only the
        entity state and the result."""
        events, dead = parse_batch(records)
        events, variants, scores = self._score(events, dead)
        now = time.time()
        appended = {r.offset: r.timestamp for r in records}
        arrivals = [appended[o] if appended[o] is not None else now for o in events.offsets]
        versions_of = {v: self.models.model(v).model.version for v in set(variants)}
        versions = [versions_of[v] for v in variants]
        states = self._entity_states(events.entity_ids)
        alpha, threshold = self.config.entity_alpha, self.config.threshold
        keep = 1 - alpha
        results, changed = [], {}
        score_list = scores.tolist()
        for offset, event_id, entity, event_time, score, variant, version in zip(
                events.offsets, events.event_ids, events.entity_ids, events.event_times, score_list, variants,
                versions, strict=True):
            state = states.get(entity)
            if state is None or state["n"] == 0:
                n, mean = 1, score
            else:
                n, mean = state["n"] + 1, keep * state["mean_score"] + alpha * score
            states[entity] = changed[entity] = {"n": n, "mean_score": mean, "last_event_time": event_time}
            results.append(ScoredEvent(offset, event_id, entity, event_time, score, int(score >= threshold),
                                       version, variant, n, mean))
        buckets, has_buckets = self._feature_buckets(events, variants)
        window_records, alerts = [], []
        for w in self.windows:
            late, clamped = w.add_batch(events.event_times, versions, scores, events.columns, arrivals,
                                        buckets, has_buckets)
            if clamped:
                self.metrics.clamped_events.labels(self.config.endpoint, w.kind).inc(clamped)
            window_records.extend(late)
            if late:
                self.metrics.late_events.labels(self.config.endpoint, w.kind).inc(len(late))
        for w in self.windows:
            closed = w.close_ready()
            window_records.extend(closed)
            alerts.extend(a for r in closed if (a := drift_alert(r, self.config.drift_alert_psi)) is not None)
        for entity, state in changed.items():
            self._remember(entity, state)
        return CommitBatch(results, dead, changed, window_records, self._next_checkpoint(records), alerts)

    def _feature_buckets(self, events: EventBatch, variants: list[str]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Each event's feature buckets on its model version's reference (one block, found once per
        batch and variant) and which events have them (a version without a reference has none)."""
        groups: dict[str, list[int]] = {}
        for i, variant in enumerate(variants):
            groups.setdefault(variant, []).append(i)
        buckets = has = None
        for variant, positions in groups.items():
            loaded = self.models.model(variant)
            if loaded.reference is None:
                continue
            self.feature_references[loaded.model.version] = loaded.reference
            if buckets is None:
                buckets = np.zeros((len(variants), len(loaded.reference.names)), dtype=np.int64)
                has = np.zeros(len(variants), dtype=bool)
            if len(positions) == len(variants):
                buckets[:] = loaded.reference.bucket_columns(events.columns)
                has[:] = True
            else:
                buckets[positions] = loaded.reference.bucket_columns(events.take(positions).columns)
                has[positions] = True
        return buckets, has

    def _score(self, events: EventBatch, dead: list[DeadLetter]) -> tuple[EventBatch, list[str], np.ndarray]:
        """The events the model scored, each one's variant and its score, in input order; events the
        model refuses become dead letters."""
        if not len(events):
            return events, [], np.empty(0)
        only = self.models.versions()
        if len(only) == 1:  # one live variant: no per-event routing draw
            variants = [next(iter(only))] * len(events)
        else:
            variants = [self.models.variant_for(entity) for entity in events.entity_ids]
        groups: dict[str, list[int]] = {}
        for i, variant in enumerate(variants):
            groups.setdefault(variant, []).append(i)
        scores = np.full(len(events), np.nan)
        refused_at: list[int] = []
        for variant, positions in groups.items():
            loaded = self.models.model(variant)
            group = events if len(positions) == len(events) else events.take(positions)
            try:
                scores[positions] = self._score_group(loaded, group.columns)
            except Exception as group_error:  # noqa: BLE001 - narrowed down one event at a time below
                refused = []  # one by one, so only the culprit is dead-lettered
                for j, i in enumerate(positions):
                    try:
                        scores[i] = self._score_group(loaded, group.take([j]).columns)[0]
                    except Exception as exc:  # noqa: BLE001
                        refused.append((i, exc))
                if len(positions) > 1 and len(refused) == len(positions) and not all(
                        isinstance(exc, runtime.InvalidInputError) for _, exc in refused):
                    raise group_error  # every event fails: the model is at fault, not the events
                for i, exc in refused:
                    dead.append(DeadLetter(events.offsets[i], f"model refused the event: {exc}. Fix: send the "
                                                              "features the model expects.", b""))
                refused_at += [i for i, _ in refused]
        if refused_at:
            kept = sorted(set(range(len(events))) - set(refused_at))
            return events.take(kept), [variants[i] for i in kept], scores[kept]
        return events, variants, scores

    @staticmethod
    def _score_group(loaded, columns: dict):
        return runtime.score_feeds(loaded.model.session, loaded.plan.feeds(columns))

    def _entity_states(self, ids: list[str]) -> dict[str, dict]:
        states = {i: self._entities[i] for i in ids if i in self._entities}
        missing = sorted(set(ids) - set(states))
        if missing:
            states.update(self.backend.entities(missing))
        return states

    def _remember(self, entity: str, state: dict) -> None:
        self._entities[entity] = state
        self._entities.move_to_end(entity)
        while len(self._entities) > self.config.entity_cache:
            self._entities.popitem(last=False)

    # -- metrics -----------------------------------------------------------------------------
    def _observe(self, batch: CommitBatch, records: list[Record], done: float, seconds: float) -> None:
        m, label = self.metrics, self.config.endpoint
        counts: dict[tuple[str, str], int] = {}
        for r in batch.results:
            counts[(r.variant, r.model_version)] = counts.get((r.variant, r.model_version), 0) + 1
        for (variant, version), n in counts.items():
            m.events.labels(label, variant, version).inc(n)
        # Also at zero: a series born with its first dead letter would hide it from increase().
        m.dead_letters.labels(label).inc(len(batch.dead_letters))
        m.batches.labels(label).inc()
        for kind in ALERT_KINDS:  # every kind's series exists from the first batch, at zero
            m.drift_alerts.labels(label, kind).inc(sum(a.get("alert") == kind for a in batch.alerts))
        m.throughput.labels(label).set(len(records) / seconds if seconds > 0 else 0.0)
        observe_many(m.latency.labels(label),
                     [max(done - r.timestamp, 0.0) for r in records if r.timestamp is not None])
        self._report_lag()

    def _report_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_at < 1.0:  # asking the broker once a second is plenty
            return
        self._lag_at = now
        lag = self.backend.lag()
        if lag is not None:
            self.metrics.lag.labels(self.config.endpoint).set(lag)
