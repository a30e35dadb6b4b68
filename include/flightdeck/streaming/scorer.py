"""The stream scorer: poll a batch, validate, score with the one ONNX function, commit atomically.

The loop is simple on purpose: poll at most `batch_size` records → score → commit → poll
again. At most one commit is in flight (while the next batch is scored) and at most two
batches are read ahead of it, so a slow sink or model slows the reads (backpressure: unread
records wait in the broker, memory stays bounded) and a crash loses only uncommitted batches,
which are re-read from the stored position on restart.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING

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
from flightdeck.streaming.events import DeadLetter, EventBatch, Record, ScoredBatch, parse_batch
from flightdeck.streaming.feature_drift import ALERT_KINDS, FeatureReference, drift_alert
from flightdeck.streaming.metrics import StreamMetrics, observe_many
from flightdeck.streaming.models import ModelRouter
from flightdeck.streaming.windows import Windows

if TYPE_CHECKING:
    from flightdeck.streaming.redis_streams import SentCommit

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
class _Pending:
    """A batch whose commit is in flight: sent (`RedisSink.send_commit`) or on the commit thread."""

    future: Future | SentCommit  # result(): the records read after the commit
    batch: CommitBatch
    records: list[Record]
    started: float


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
        self._checkpoint = Checkpoint()  # what the next batch continues from
        self._confirmed = Checkpoint()  # what the sink is known to hold
        self._in_flight: dict[str, dict] = {}  # entity states of the batch whose commit is in flight
        self._complete = False  # the entity cache holds every state the sink has (see _warm_entities)
        self._lag_at = -float('inf')

    def start(self) -> Checkpoint:
        """Load the stored checkpoint, restore windows and seek the source right after it."""
        self._checkpoint = self._confirmed = self.backend.start()
        self._in_flight = {}
        self._rewind()
        self._warm_entities()
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
        """Process until stopped, `max_records` processed, or no record for `idle_stop_s`.

        With a sink that allows it, a batch's commit is in flight while the next batch is processed,
        and the batch after that is read behind the commit: Redis applies one script and prepares the
        next records while Python parses and scores. The Redis sink sends the commit and the read in
        one write and the scorer reads both replies once the next batch is processed (`send_commit`,
        no thread); another sink with `overlapping_commits` commits and reads on a second thread. At
        most one commit is in flight, and the next one is sent only once it has succeeded, so a crash
        still loses at most uncommitted work. If it was fenced (or refused), nothing read after it is
        used: the batch processed meanwhile is dropped and the scorer re-reads from the stored
        position (or splits the refused batch and commits the one processed meanwhile alone)."""
        self.start()
        # What is loaded by now (libraries, model sessions, references, the entity cache) lives as long
        # as the run: kept out of the collector's full passes, which otherwise walk all of it each time
        # the new objects have grown by a quarter of it (a pause of 0.1-0.5 s); back at the end, unless
        # the process had frozen objects itself (as the gateway does).
        thaw = gc.get_freeze_count() == 0
        gc.freeze()
        stats = RunStats()
        idle_since = time.monotonic()
        sink = getattr(self.backend, "sink", None)
        send = getattr(sink, "send_commit", None)  # the commit sent, its reply read later (no thread)
        if callable(send):
            source = getattr(self.backend, "source", None)
            pool = None
        elif getattr(sink, "overlapping_commits", False):
            pool = ThreadPoolExecutor(1, thread_name_prefix="stream-commit")
        else:
            pool = send = None
        pending: _Pending | None = None
        records: list[Record] = []  # read, not yet processed

        def room(processed: int = 0) -> int:
            """Records the next poll may take (`processed`: read ones not yet handed to the sink)."""
            if max_records is None:
                return self.config.batch_size
            taken = stats.records + (len(pending.records) if pending else 0) + len(records) + processed
            return min(self.config.batch_size, max_records - taken)
        try:
            while not self.stop_event.is_set():
                if not records:
                    if pending is not None:  # nothing read to overlap with: settle it first
                        _, records = self._settle(pending, stats)
                        pending = None
                        continue
                    if room() <= 0:
                        break
                    records = self.backend.poll(room(), self.config.poll_timeout_s)
                    if not records:
                        if idle_stop_s is not None and time.monotonic() - idle_since >= idle_stop_s:
                            break
                        self._report_lag()
                        continue
                idle_since = started = time.monotonic()
                self._refresh_models()
                if pool is None and send is None:
                    try:
                        batch = self._commit(records)
                    except FencedError as exc:
                        log.warning("%s", exc)
                        self.start()  # re-read from the position the other scorer stored
                    else:
                        self._count(stats, batch, records, started)
                    records = []
                    continue
                batch = self.process(records)  # on top of the state the batch in flight leaves
                done, records = records, []
                if pending is not None:
                    outcome, records = self._settle(pending, stats)  # and what it read after its commit
                    pending = None
                    if outcome == "fenced":  # this batch was processed on state that is not stored
                        continue
                    if outcome == "redone":  # the one in flight was split: this one goes the same way
                        self._count(stats, self._commit(done), done, started)
                        continue
                if not records and room(len(done)) > 0 and not self.stop_event.is_set():
                    # Nothing read ahead (the first batch, or the stream was drained): read the next batch
                    # now, while Redis is idle, without waiting.
                    records = self.backend.poll(room(len(done)), 0)
                # Send this batch's commit and the read of the one after the next (or hand both to the
                # commit thread); meanwhile Python processes the next batch.
                ahead = room(len(done)) if not self.stop_event.is_set() else 0
                sent = (send(batch, source, ahead) if send is not None
                        else pool.submit(self._commit_and_read, batch, ahead))
                pending = _Pending(sent, batch, done, started)
                self._in_flight = batch.entities
                self._checkpoint = batch.checkpoint  # the next batch continues from it
            if pending is not None:
                self._settle(pending, stats)
                pending = None
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
            elif pending is not None:  # stopped by an error with a commit's replies unread
                pending.future.close()
            if thaw:
                gc.unfreeze()
        self.backend.close()
        return stats

    def _commit_and_read(self, batch: CommitBatch, ahead: int) -> list[Record]:
        """On the commit thread: commit `batch`, then read up to `ahead` records without waiting (none
        when the commit failed, or the scorer is stopping). The source is only ever polled by one
        thread at a time: the scorer waits for this before it polls or seeks again."""
        self.backend.commit(batch)
        if ahead <= 0 or self.stop_event.is_set():
            return []
        return self.backend.poll(ahead, 0)

    def _settle(self, pending: _Pending, stats: RunStats) -> tuple[str, list[Record]]:
        """Wait for the commit in flight: "ok" with the records read after it; "fenced" (the scorer has
        re-read the stored position); or "redone" when the sink refused the batch's content and it was
        committed again in parts. Only "ok" reads ahead."""
        try:
            ahead = pending.future.result()
        except FencedError as exc:
            log.warning("%s", exc)
            self.start()
            return "fenced", []
        except SinkRejectedError:
            # Back to the last stored checkpoint (windows, entity cache) and split that batch.
            self._in_flight = {}  # its states were never stored
            self._checkpoint = self._confirmed
            self._rewind()
            self._count(stats, self._commit(pending.records), pending.records, pending.started)
            return "redone", []
        finally:
            self._in_flight = {}
        self._confirmed = pending.batch.checkpoint
        self._count(stats, pending.batch, pending.records, pending.started)
        return "ok", ahead

    def _count(self, stats: RunStats, batch: CommitBatch, records: list[Record], started: float) -> None:
        """Account a committed batch in the run's stats and the metrics."""
        done = time.time()
        stats.records += len(records)
        stats.scored += len(batch.results)
        stats.dead_letters += len(batch.dead_letters)
        stats.batches += 1
        self._observe(batch, records, done, time.monotonic() - started)

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
        self._checkpoint = self._confirmed = batch.checkpoint
        return batch

    def _commit_refused(self, record: Record, exc: SinkRejectedError) -> CommitBatch:
        dead = DeadLetter(record.offset, f"{exc}. Fix: send values the sink can store, then publish the "
                                         "event again.", record.value)
        batch = CommitBatch([], [dead], {}, [], self._next_checkpoint([record]))
        self.backend.commit(batch)  # a dead letter refused too means the sink itself is wrong: stop
        self._checkpoint = self._confirmed = batch.checkpoint
        return batch

    def _rewind(self) -> None:
        """Forget what was processed after the stored checkpoint: windows back to it, entity states
        read again from the sink."""
        for w in self.windows:
            state = (self._checkpoint.windows or {}).get(w.kind)
            w.restore(state) if state else w.reset()
        self._entities.clear()
        self._complete = False

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
        if len(events) == len(records):  # every record scored: the events are the records, in order
            arrivals = [now if r.timestamp is None else r.timestamp for r in records]
        else:
            appended = {r.offset: r.timestamp for r in records}
            arrivals = [appended[o] if appended[o] is not None else now for o in events.offsets]
        versions_of = {v: self.models.model(v).model.version for v in set(variants)}
        versions = [versions_of[v] for v in variants]
        states = self._entity_states(events.entity_ids)
        alpha = self.config.entity_alpha
        keep = 1 - alpha
        changed: dict[str, dict] = {}
        counts, means = [], []
        score_list = scores.tolist()
        for entity, event_time, score in zip(events.entity_ids, events.event_times, score_list, strict=True):
            state = states.get(entity)
            if state is None or state["n"] == 0:
                n, mean = 1, score
            else:
                n, mean = state["n"] + 1, keep * state["mean_score"] + alpha * score
            states[entity] = changed[entity] = {"n": n, "mean_score": mean, "last_event_time": event_time}
            counts.append(n)
            means.append(mean)
        results = ScoredBatch(events.offsets, events.event_ids, events.entity_ids, events.event_times, score_list,
                              (scores >= self.config.threshold).astype(int).tolist(), versions, variants,
                              counts, means)
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
        self._remember(changed)
        return CommitBatch(results, dead, changed, window_records, self._next_checkpoint(records), alerts)

    def _feature_buckets(self, events: EventBatch, variants: list[str]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Each event's feature buckets on its model version's reference (one block, found once per
        batch and variant) and which events have them (a version without a reference has none)."""
        groups = _positions(variants)
        buckets = has = None
        for variant, positions in groups.items():
            loaded = self.models.model(variant)
            if loaded.reference is None:
                continue
            self.feature_references[loaded.model.version] = loaded.reference
            if len(positions) == len(variants):  # the only variant
                return loaded.reference.bucket_columns(events.columns), np.ones(len(variants), dtype=bool)
            if buckets is None:
                buckets = np.zeros((len(variants), len(loaded.reference.names)), dtype=np.int64)
                has = np.zeros(len(variants), dtype=bool)
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
        groups = _positions(variants)
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

    def _warm_entities(self) -> None:
        """With a sink that can list its entity states (`all_entities`) and no more of them than the
        cache holds, load them all: the cache then knows every stored state, and an entity it lacks is
        new, with no read from the sink, until the cache first evicts one. Loaded after the checkpoint,
        so a commit by another scorer in between fences this one's first commit."""
        loader = getattr(getattr(self.backend, "sink", None), "all_entities", None)
        stored = loader(self.config.entity_cache) if callable(loader) else None
        if stored is None:
            return
        self._entities.update(stored)
        self._complete = True

    def _entity_states(self, ids: list[str]) -> dict[str, dict]:
        cache, flying = self._entities, self._in_flight
        states = {i: cache[i] for i in ids if i in cache}
        if self._complete:
            return states  # the cache holds every stored state: the others are new entities
        missing = [i for i in dict.fromkeys(ids) if i not in states]
        if missing and flying:  # evicted from the cache while its commit is in flight
            states.update((i, flying[i]) for i in missing if i in flying)
            missing = [i for i in missing if i not in states]
        if missing:
            states.update(self.backend.entities(missing))
        return states

    def _remember(self, states: dict[str, dict]) -> None:
        """Put the states in the cache as the most recently used, then evict the least recently used
        beyond `entity_cache`."""
        cache = self._entities
        move = cache.move_to_end
        for entity, state in states.items():
            cache[entity] = state
            move(entity)
        if len(cache) > self.config.entity_cache:
            for _ in range(len(cache) - self.config.entity_cache):
                cache.popitem(last=False)
            self._complete = False  # an evicted state is only in the sink now

    # -- metrics -----------------------------------------------------------------------------
    def _observe(self, batch: CommitBatch, records: list[Record], done: float, seconds: float) -> None:
        m, label = self.metrics, self.config.endpoint
        if isinstance(batch.results, ScoredBatch):
            counts = batch.results.counts()
        else:
            counts = {}
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
        stamps = list(map(_timestamp, records))
        if None in stamps:
            stamps = [t for t in stamps if t is not None]
        observe_many(m.latency.labels(label), np.maximum(done - np.array(stamps, dtype=np.float64), 0.0))
        self._report_lag()

    def _report_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_at < 1.0:  # asking the broker once a second is plenty
            return
        self._lag_at = now
        lag = self.backend.lag()
        if lag is not None:
            self.metrics.lag.labels(self.config.endpoint).set(lag)


_timestamp = itemgetter(2)  # a Record's append time


def _positions(variants: list[str]) -> dict[str, list[int]]:
    """Each variant's positions in `variants`, in order (one list per variant)."""
    if variants and variants.count(variants[0]) == len(variants):
        return {variants[0]: list(range(len(variants)))}
    groups: dict[str, list[int]] = {}
    for i, variant in enumerate(variants):
        groups.setdefault(variant, []).append(i)
    return groups
