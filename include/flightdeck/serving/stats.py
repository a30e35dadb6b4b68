"""Running sums per variant: kept in each worker process, published to the database, summed
across workers for the metric gates and GET /stats.

Each worker keeps absolute totals since it started (`RunningStats`) and periodically
upserts them under its own worker id (`StatsStore.publish`). Publishing absolute totals,
not increments, makes a publish idempotent: a retried or repeated publish cannot double
count. The worker id must therefore be unique per process start (`new_worker_id`).
"""

from __future__ import annotations

import math
import os
import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import NamedTuple

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from flightdeck.serving.db import SCORE_BIN_COLUMNS, utcnow, variant_stats, write_transaction
from flightdeck.stats import N_SCORE_BINS, score_bin, score_bin_counts

ROLES = ("live", "shadow")
# Above this many scores, numpy's reductions beat a Python loop over the values.
_NUMPY_FROM = 32
_SCALARS = ("requests", "errors", "latency_sum", "latency_sumsq", "rows", "score_sum", "score_sumsq")
_SUMS = (*_SCALARS, *SCORE_BIN_COLUMNS, "disagreements")


class StatsKey(NamedTuple):
    """What the sums are kept per: one variant's model version under one route table, live or shadow."""

    endpoint: str
    variant: str
    model_version: str
    route_version: int
    role: str  # "live" or "shadow"


@dataclass(frozen=True)
class StatTotals:
    """Absolute totals of one key since the worker started.

    `requests` counts every request (failed ones too) and `latency_*` covers them all;
    `rows` counts scored rows and `score_*` sums their scores.
    """

    key: StatsKey
    requests: int
    errors: int
    latency_sum: float
    latency_sumsq: float
    rows: int
    score_sum: float
    score_sumsq: float
    score_bins: tuple[int, ...] = (0,) * N_SCORE_BINS
    disagreements: int = 0

    def columns(self) -> dict:
        """The sums as `variant_stats` columns."""
        return {"requests": self.requests, "errors": self.errors, "latency_sum": self.latency_sum,
                "latency_sumsq": self.latency_sumsq, "rows": self.rows, "score_sum": self.score_sum,
                "score_sumsq": self.score_sumsq, **dict(zip(SCORE_BIN_COLUMNS, self.score_bins, strict=True)),
                "disagreements": self.disagreements}


def new_worker_id() -> str:
    """An id unique to this process start: host, pid and a random suffix."""
    return f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class RunningStats:
    """In-process accumulator, written on every request and read by a flusher thread.

    The lock is uncontended almost always (one event-loop thread records, a flusher reads
    once a second) and costs well under a microsecond; it keeps a snapshot consistent.
    """

    def __init__(self) -> None:
        self._sums: dict[StatsKey, list] = {}
        self._lock = threading.Lock()

    def record(self, key: StatsKey, latency_s: float, scores: np.ndarray, error: bool = False,
               disagreements: int = 0, values: list[float] | None = None) -> None:
        """Count one request of `key`: its latency, its scores (float64, may be empty), failed or
        not, and for a shadow how many of its rows disagreed with the live answer. `values`:
        `scores.tolist()` when the caller has it already."""
        n = scores.size
        if n > _NUMPY_FROM:
            score_sum = float(scores.sum())
            score_sumsq = float(np.dot(scores, scores))
            bins = score_bin_counts(scores)
            bin_items = [(i, int(c)) for i, c in enumerate(bins.tolist()) if c]
        elif n == 1:  # one row, the common case
            value = values[0] if values is not None else float(scores[0])
            score_sum, score_sumsq, bin_items = value, value * value, ((score_bin(value), 1),)
        elif n:  # small requests: numpy's per-call overhead would dominate
            if values is None:
                values = scores.tolist()
            score_sum = sum(values)
            score_sumsq = sum([v * v for v in values])
            bin_items = [(score_bin(v), 1) for v in values]
        else:
            score_sum = score_sumsq = 0.0
            bin_items = []
        with self._lock:
            sums = self._sums.get(key)
            if sums is None:
                sums = self._sums[key] = [0, 0, 0.0, 0.0, 0, 0.0, 0.0, [0] * N_SCORE_BINS, 0]
            sums[0] += 1
            if error:
                sums[1] += 1
            sums[2] += latency_s
            sums[3] += latency_s * latency_s
            sums[4] += n
            sums[5] += score_sum
            sums[6] += score_sumsq
            bins_total = sums[7]
            for index, count in bin_items:
                bins_total[index] += count
            sums[8] += disagreements

    def snapshot(self) -> list[StatTotals]:
        """Absolute totals of every key seen since this object was created."""
        with self._lock:
            copied = [(key, (*sums[:7], tuple(sums[7]), sums[8])) for key, sums in self._sums.items()]
        return [StatTotals(key, *sums) for key, sums in copied]


@dataclass(frozen=True)
class VariantSummary:
    """One (variant, model_version) of an endpoint, summed over workers and route versions.

    Means and sample standard deviations are None when undefined (no requests / rows, or
    only one), so the object stays JSON-serialisable (`to_dict`).
    """

    endpoint: str
    role: str
    variant: str
    model_version: str
    requests: int
    errors: int
    rows: int
    error_rate: float | None
    latency_mean_s: float | None
    latency_std_s: float | None
    score_mean: float | None
    score_std: float | None
    latency_sum: float
    latency_sumsq: float
    score_sum: float
    score_sumsq: float
    score_bins: list[int]
    disagreements: int
    workers: int
    updated_at: datetime | None

    def to_dict(self) -> dict:
        """JSON-ready form (updated_at as ISO 8601)."""
        data = asdict(self)
        data["updated_at"] = self.updated_at.isoformat() if self.updated_at else None
        return data


def mean_std(n: int, total: float, total_sq: float) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation from a count, a sum and a sum of squares."""
    if n <= 0:
        return None, None
    mean = total / n
    if n == 1:
        return mean, None
    # Rounding can leave a tiny negative variance when all values are equal.
    variance = max(total_sq - n * mean * mean, 0.0) / (n - 1)
    return mean, math.sqrt(variance)


class StatsStore:
    """Per-worker running totals in the `variant_stats` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def publish(self, worker_id: str, totals: list[StatTotals]) -> None:
        """Upsert this worker's absolute totals. Publishing the same snapshot again changes nothing."""
        if not totals:
            return
        now = utcnow()
        rows = [{**t.key._asdict(), "worker_id": worker_id, **t.columns(), "updated_at": now} for t in totals]
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            insert = postgresql.insert(variant_stats)
        elif dialect == "sqlite":
            insert = sqlite.insert(variant_stats)
        else:
            raise NotImplementedError(f"the gateway database supports PostgreSQL and SQLite, not {dialect}")
        excluded = insert.excluded
        changed = sa.or_(*(variant_stats.c[name] != excluded[name] for name in _SUMS))
        statement = insert.on_conflict_do_update(
            index_elements=[c.name for c in variant_stats.primary_key.columns],
            set_={name: excluded[name] for name in (*_SUMS, "updated_at")},
            where=changed)  # unchanged totals keep their row (and updated_at) as they were
        with write_transaction(self.engine) as conn:
            conn.execute(statement, rows)

    def summary(self, endpoint: str, since_route_version: int = 0, role: str = "live") -> list[VariantSummary]:
        """Totals of `endpoint` per (variant, model_version), over every worker and every route
        version >= `since_route_version`, for `role` ("live" or "shadow")."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        c = variant_stats.c
        query = (sa.select(c.variant, c.model_version,
                           *(sa.func.sum(c[name]).label(name) for name in _SUMS),
                           sa.func.count(sa.distinct(c.worker_id)).label("workers"),
                           sa.func.max(c.updated_at).label("updated_at"))
                 .where(c.endpoint == endpoint, c.role == role, c.route_version >= since_route_version)
                 .group_by(c.variant, c.model_version)
                 .order_by(c.variant, c.model_version))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [_summary(endpoint, role, row) for row in rows]

    def summary_as_dict(self, endpoint: str, since_route_version: int = 0, role: str = "live") -> list[dict]:
        """`summary` in JSON-ready form."""
        return [item.to_dict() for item in self.summary(endpoint, since_route_version, role)]


def _summary(endpoint: str, role: str, row) -> VariantSummary:
    requests, errors, rows = int(row.requests), int(row.errors), int(row.rows)
    latency_mean, latency_std = mean_std(requests, row.latency_sum, row.latency_sumsq)
    score_mean, score_std = mean_std(rows, row.score_sum, row.score_sumsq)
    return VariantSummary(
        endpoint=endpoint, role=role, variant=row.variant, model_version=row.model_version,
        requests=requests, errors=errors, rows=rows,
        error_rate=errors / requests if requests else None,
        latency_mean_s=latency_mean, latency_std_s=latency_std, score_mean=score_mean, score_std=score_std,
        latency_sum=float(row.latency_sum), latency_sumsq=float(row.latency_sumsq),
        score_sum=float(row.score_sum), score_sumsq=float(row.score_sumsq),
        score_bins=[int(row._mapping[name]) for name in SCORE_BIN_COLUMNS], disagreements=int(row.disagreements),
        workers=int(row.workers), updated_at=row.updated_at)
