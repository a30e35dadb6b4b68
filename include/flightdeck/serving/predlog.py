"""The prediction log: every scored row, written in batches off the request path, and the
outcomes (labels) that arrive later. Reading them back (the outcome join included) is
`flightdeck.serving.predlog_reads`.

`PredictionLogWriter.submit` never blocks a request: rows go to a bounded in-memory buffer
and a daemon thread inserts them in batches. When the buffer is full the rows are dropped
and counted (`dropped`); when the database fails, a batch is retried with backoff and then
counted as `failed`. Rows the database refuses as data (a value it cannot store) are split
off by bisection and counted as `failed` alone: they never cost the rows batched with them.
The counters are exported by the gateway, so loss is visible.
"""

from __future__ import annotations

import io
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from flightdeck.serving.db import outcomes as outcomes_table
from flightdeck.serving.db import predictions, utcnow, write_transaction
from flightdeck.serving.errors import InvalidInputError

log = logging.getLogger(__name__)

class PredictionRecord(NamedTuple):
    """One scored row (a tuple: cheap to build, one per row). Fields in table column order."""

    request_id: str
    row_index: int
    unit_id: str | None
    endpoint: str
    variant: str
    model_version: str
    route_version: int
    role: str  # "live" or "shadow"
    input_hash: str
    score: float
    latency_ms: float
    fallback: bool = False
    created_at: datetime | None = None  # None: when it was submitted
    features: str | None = None  # the row's input as a JSON object (live rows)
    forced: bool = False  # an admin forced the variant: not evidence for gates or experiments
    client_request_id: str | None = None  # the id the caller sent (request_id is the gateway's)


class PredictionLogWriter:
    """A bounded, batched writer of prediction records on a daemon thread.

    Rows are written once `batch_size` of them wait, or every `flush_seconds` otherwise.
    At most `queue_size` rows wait (including the batch being written); beyond that,
    `submit` drops and counts; the same goes for rows beyond `queue_bytes` of estimated
    memory (`record_bytes`), so a flood of large rows cannot exhaust the worker either.
    A failed batch is retried `retries` times, backing off from `retry_backoff_s`, then
    counted as failed; the thread carries on.
    """

    def __init__(self, engine: Engine, queue_size: int = 100_000, batch_size: int = 1000,
                 flush_seconds: float = 0.2, *, queue_bytes: int = 256 * 1024 * 1024, retries: int = 3,
                 retry_backoff_s: float = 0.2) -> None:
        if queue_size <= 0 or batch_size <= 0 or flush_seconds <= 0 or queue_bytes <= 0:
            raise ValueError("queue_size, queue_bytes, batch_size and flush_seconds must be positive")
        self.engine = engine
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s
        # (submitted_at, records, their record_bytes) chunks, as submitted: appending a chunk is O(1).
        self._chunks: deque[tuple[datetime, Sequence[PredictionRecord], int]] = deque()
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # notified when rows are written or failed
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._deadline: float | None = None
        self._buffered = 0  # rows in _chunks
        self._in_flight = 0  # rows taken by the writer, not yet written or failed
        self._bytes = 0  # estimated memory of the rows buffered or in flight
        self._written = self._dropped = self._failed = self._batches = 0

    # ---- counters ------------------------------------------------------------------------
    @property
    def written(self) -> int:
        """Rows inserted."""
        return self._written

    @property
    def dropped(self) -> int:
        """Rows refused because the buffer was full (or the writer closed), never attempted."""
        return self._dropped

    @property
    def failed(self) -> int:
        """Rows lost to database errors after every retry."""
        return self._failed

    @property
    def queued(self) -> int:
        """Rows accepted and not yet written or failed (approximate: read without the lock)."""
        return self._buffered + self._in_flight

    @property
    def batches(self) -> int:
        """Insert statements that succeeded."""
        return self._batches

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread (rows submitted before wait for it). Idempotent."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
            self._thread.start()

    def submit(self, records: Sequence[PredictionRecord]) -> int:
        """Queue `records` for writing; return how many were accepted. Never blocks.

        Rows beyond the free space are dropped and counted.
        """
        n = len(records)
        if not n:
            return 0
        if type(records) is not tuple:
            # A copy, and tuples of plain values drop out of the garbage collector's scans,
            # which keeps a long backlog from lengthening GC pauses in the event loop.
            records = tuple(records)
        submitted_at = utcnow()
        sizes = [record_bytes(records[0])] if n == 1 else [record_bytes(r) for r in records]
        with self._lock:
            room = 0 if self._closing else self.queue_size - self._buffered - self._in_flight
            accepted = n if n <= room else max(room, 0)
            size = sizes[0] if accepted == 1 else sum(sizes[:accepted])
            while accepted and self._bytes + size > self.queue_bytes:
                accepted -= 1
                size -= sizes[accepted]
            if accepted:
                self._chunks.append((submitted_at, records if accepted == n else records[:accepted], size))
                self._buffered += accepted
                self._bytes += size
            self._dropped += n - accepted
            full_batch = self._buffered >= self.batch_size
        if full_batch and not self._wake.is_set():
            self._wake.set()
        return accepted

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every row accepted so far is written or failed; False on timeout."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._settled:
            while self._buffered + self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._settled.wait(min(remaining, 0.05))
                self._wake.set()
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Write what can be written within `timeout` seconds, then stop the thread.

        Later submits are dropped. Rows still waiting at the deadline are counted as dropped.
        """
        with self._lock:
            self._closing = True
            self._deadline = time.monotonic() + timeout
        self.start()  # a writer that never started still drains what it was given
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout + 1.0)
        if self._thread.is_alive():
            log.warning("prediction log writer still busy %.1f s after close(); %d rows pending",
                        timeout, self.queued)

    # ---- the writer thread ---------------------------------------------------------------
    def _run(self) -> None:
        while True:
            if not self._stop.is_set() and self._buffered < self.batch_size:
                self._wake.wait(self.flush_seconds)
                self._wake.clear()
            taken, size = self._take()
            if taken:
                self._write(taken)
                with self._lock:
                    self._bytes -= size
            elif self._stop.is_set():
                return

    def _take(self) -> tuple[list[tuple[datetime, Sequence[PredictionRecord]]], int]:
        """Up to `batch_size` waiting rows, as chunks (the conversion happens outside the lock),
        and their estimated memory."""
        with self._lock:
            if self._deadline is not None and time.monotonic() > self._deadline:
                if self._buffered:
                    log.warning("prediction log closing: %d rows not written before the deadline",
                                self._buffered)
                self._dropped += self._buffered
                self._bytes -= sum(size for _, _, size in self._chunks)
                self._buffered = 0
                self._chunks.clear()
                self._settled.notify_all()
                return [], 0
            taken, rows, taken_size = [], 0, 0
            while self._chunks and rows < self.batch_size:
                submitted_at, chunk, size = self._chunks.popleft()
                room = self.batch_size - rows
                if len(chunk) > room:  # split a large chunk (its parts' sizes counted again)
                    rest = chunk[room:]
                    rest_size = sum(record_bytes(r) for r in rest)
                    self._chunks.appendleft((submitted_at, rest, rest_size))
                    chunk, size = chunk[:room], size - rest_size
                taken.append((submitted_at, chunk))
                rows += len(chunk)
                taken_size += size
            self._buffered -= rows
            self._in_flight += rows
        return taken, taken_size

    def _write(self, taken: list[tuple[datetime, Sequence[PredictionRecord]]]) -> None:
        """Write `taken`; rows the database refuses as data are split off and counted as failed,
        so one bad row never costs the rows written with it."""
        rows = sum(len(chunk) for _, chunk in taken)
        insert = _copy_rows if self.engine.dialect.driver == "psycopg2" else _insert_rows
        for attempt in range(self.retries + 1):
            try:
                with write_transaction(self.engine) as conn:
                    insert(conn, taken)
            except Exception as exc:  # the thread must survive anything the database does
                if _refused_as_data(exc):
                    if rows == 1:
                        record = taken[0][1][0]
                        log.error("prediction log: the database refused a row of request %.80r (%s)",
                                  record.request_id, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                        self._settle(1, ok=False)
                        return
                    first, second = _split_rows(taken, rows // 2)
                    self._write(first)
                    self._write(second)
                    return
                out_of_time = self._deadline is not None and time.monotonic() > self._deadline
                if attempt == self.retries or out_of_time:
                    log.error("prediction log: %d rows lost after %d attempts: %s", rows, attempt + 1, exc)
                    self._settle(rows, ok=False)
                    return
                delay = self.retry_backoff_s * 2 ** attempt
                log.warning("prediction log: insert of %d rows failed (%s); retrying in %.2f s",
                            rows, exc, delay)
                self._stop.wait(delay)  # close() cuts the backoff short
            else:
                self._settle(rows, ok=True)
                return

    def _settle(self, rows: int, ok: bool) -> None:
        with self._lock:
            self._in_flight -= rows
            if ok:
                self._written += rows
                self._batches += 1
            else:
                self._failed += rows
            self._settled.notify_all()


# SQLSTATE classes of errors caused by the rows themselves (data exception, integrity constraint,
# program limit such as an index row too large): retrying the same rows cannot succeed.
_DATA_SQLSTATE_CLASSES = ("22", "23", "54")


def _refused_as_data(exc: BaseException) -> bool:
    """Whether the database (or the driver, encoding the rows) refused the rows themselves,
    as opposed to a transient failure such as a lost connection."""
    orig = getattr(exc, "orig", None) or exc
    code = getattr(orig, "pgcode", None)
    if code:
        return code[:2] in _DATA_SQLSTATE_CLASSES
    return isinstance(exc, sa.exc.DataError | sa.exc.IntegrityError | UnicodeError)


def _split_rows(taken: list[tuple[datetime, Sequence[PredictionRecord]]], at: int):
    """`taken` cut into its first `at` rows and the rest, chunk boundaries kept."""
    first, second, seen = [], [], 0
    for submitted_at, chunk in taken:
        if seen >= at:
            second.append((submitted_at, chunk))
        elif seen + len(chunk) <= at:
            first.append((submitted_at, chunk))
        else:
            cut = at - seen
            first.append((submitted_at, chunk[:cut]))
            second.append((submitted_at, chunk[cut:]))
        seen += len(chunk)
    return first, second


# What a queued record costs besides its text fields: the tuple, numbers, short strings.
_RECORD_OVERHEAD = 400


def record_bytes(record: PredictionRecord) -> int:
    """Estimated memory of a queued record; what `queue_bytes` bounds."""
    return (_RECORD_OVERHEAD + len(record.request_id) + len(record.unit_id or "")
            + len(record.features or "") + len(record.client_request_id or ""))


def _insert_rows(conn, taken: list[tuple[datetime, Sequence[PredictionRecord]]]) -> None:
    """Portable batched INSERT (SQLite, other drivers)."""
    params = []
    for submitted_at, chunk in taken:
        for record in chunk:
            row = record._asdict()
            if row["created_at"] is None:
                row["created_at"] = submitted_at
            params.append(row)
    conn.execute(predictions.insert(), params)


# COPY's text format: backslash escapes for the characters that delimit fields and rows.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_SQL = f"COPY predictions ({', '.join(PredictionRecord._fields)}) FROM STDIN"


def _copy_rows(conn, taken: list[tuple[datetime, Sequence[PredictionRecord]]]) -> None:
    """PostgreSQL COPY: about 4x the rows/s of a multi-row INSERT through psycopg2, and the
    text is built by str methods, so the writer holds the GIL for less time."""
    lines = []
    for submitted_at, chunk in taken:
        for r in chunk:
            created_at = r.created_at or submitted_at
            if created_at.tzinfo is None:
                created_at = created_at.replace(tzinfo=UTC)  # naive means UTC, as in UtcDateTime
            lines.append("\t".join((
                r.request_id.translate(_COPY_ESCAPES), str(r.row_index),
                "\\N" if r.unit_id is None else r.unit_id.translate(_COPY_ESCAPES),
                r.endpoint.translate(_COPY_ESCAPES), r.variant.translate(_COPY_ESCAPES),
                r.model_version.translate(_COPY_ESCAPES), str(r.route_version),
                r.role.translate(_COPY_ESCAPES), r.input_hash.translate(_COPY_ESCAPES),
                repr(float(r.score)), repr(float(r.latency_ms)), "t" if r.fallback else "f",
                created_at.isoformat(),
                "\\N" if r.features is None else r.features.translate(_COPY_ESCAPES),
                "t" if r.forced else "f",
                "\\N" if r.client_request_id is None else r.client_request_id.translate(_COPY_ESCAPES))))
    lines.append("")
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(_COPY_SQL, io.StringIO("\n".join(lines)))
    finally:
        cursor.close()


class Outcome(NamedTuple):
    """An observed label for a request (`request_id`) or a unit such as a user (`unit_id`)."""

    request_id: str | None
    unit_id: str | None
    label: float
    observed_at: datetime | None = None  # None: when it is recorded


class OutcomeStore:
    """Outcomes (labels), recorded all or none (`predlog_reads` joins them to the predictions)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, outcomes: list[Outcome]) -> int:
        """Store outcomes; return how many. All or none: a bad item raises InvalidInputError
        naming its index before anything is written."""
        now = utcnow()
        rows = [_outcome_row(index, item, now) for index, item in enumerate(outcomes)]
        if rows:
            with write_transaction(self.engine) as conn:
                conn.execute(outcomes_table.insert(), rows)
        return len(rows)


def _outcome_row(index: int, item: Outcome, now: datetime) -> dict:
    request_id, unit_id = item.request_id, item.unit_id
    for name, value in (("request_id", request_id), ("unit_id", unit_id)):
        if value is not None and (not isinstance(value, str) or not value):
            raise InvalidInputError(f"outcome {index}: {name} must be a non-empty string, got {value!r}. "
                                    f"Fix: send the {name} the gateway returned, or null.",
                                    field=f"outcomes[{index}].{name}")
    if request_id is None and unit_id is None:
        raise InvalidInputError(f"outcome {index} has neither request_id nor unit_id. Fix: give the "
                                "request_id the gateway returned, or the unit_id the request was sent with.",
                                field=f"outcomes[{index}]")
    try:
        label = float(item.label)
    except (TypeError, ValueError):
        label = math.nan
    if not math.isfinite(label):
        raise InvalidInputError(f"outcome {index}: label must be a finite number, got {item.label!r}. "
                                "Fix: send the observed label, e.g. 0 or 1.", field=f"outcomes[{index}].label")
    observed_at = item.observed_at
    if observed_at is not None and not isinstance(observed_at, datetime):
        raise InvalidInputError(f"outcome {index}: observed_at must be a datetime, got {observed_at!r}. "
                                "Fix: send an ISO 8601 timestamp or omit it.", field=f"outcomes[{index}].observed_at")
    return {"request_id": request_id, "unit_id": unit_id, "label": label,
            "observed_at": observed_at or now, "recorded_at": now}
