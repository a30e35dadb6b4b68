"""Reading the prediction log: the one place that queries the `predictions` and `outcomes` tables.

The writer (`flightdeck.serving.predlog`) fills them; everything that reads them back — the
offline backtest, the pre-flight schema check, experiment metrics, shadow evaluation — calls
the functions here instead of writing SQL of its own.

The label of a prediction is defined once (`read_predictions` with the column "label"): the
latest outcome (by observed_at, then by insertion) recorded for the prediction's request_id
(the gateway's id, else the id the caller sent, `client_request_id`); failing that, the latest
recorded for its unit_id. An outcome keyed by request_id labels
every row of that request; a prediction with neither has no label (NaN).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from flightdeck.serving.db import UtcDateTime, outcomes, predictions

Role = Literal["live", "shadow"]

LABEL = "label"
"""The derived column: the prediction's outcome by the rule above (float, NaN when none)."""
COLUMNS: tuple[str, ...] = (*(c.name for c in predictions.columns), LABEL)
"""What `read_predictions` can return: every column of the table, and the label."""
_FLOAT_COLUMNS = ("score", "latency_ms", LABEL)


def read_predictions(engine: Engine, endpoint: str, columns: Sequence[str], *, start: datetime | None = None,
                     end: datetime | None = None, role: Role | None = "live", labelled_only: bool = False,
                     with_features: bool = False, newest: int | None = None,
                     include_forced: bool = True) -> pd.DataFrame:
    """Prediction-log rows of `endpoint`, oldest first (by created_at, then insertion).

    Args:
        columns: names from `COLUMNS`, in the order wanted; "label" looks up the outcomes.
        start, end: keep rows created in [start, end) (UTC; either may be None).
        role: "live" or "shadow" rows only; None for both.
        labelled_only: keep rows that have a label (looked up even if "label"
            is not among `columns`).
        with_features: keep rows logged with their input (`features` not null).
        newest: keep only the `newest` most recent rows (still returned oldest first).
        include_forced: False leaves out requests an admin forced onto a variant (no evidence
            about the endpoint's policy: experiments leave them out).

    score, latency_ms and label are float64, created_at a UTC datetime; the frame has the
    columns asked for even when no row matches.
    """
    query = predictions_query(endpoint, columns, start=start, end=end, role=role, labelled_only=labelled_only,
                              with_features=with_features, newest=newest, include_forced=include_forced)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    if newest is not None:
        rows.reverse()
    frame = pd.DataFrame([tuple(row) for row in rows], columns=list(columns))
    for column in _FLOAT_COLUMNS:
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    if "created_at" in frame:
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame


def predictions_query(endpoint: str, columns: Sequence[str], *, start: datetime | None = None,
                      end: datetime | None = None, role: Role | None = "live", labelled_only: bool = False,
                      with_features: bool = False, newest: int | None = None,
                      include_forced: bool = True) -> sa.Select:
    """The SELECT behind `read_predictions` (kept apart so its plan can be checked); newest-first
    when `newest` is given."""
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown or not columns:
        raise ValueError(f"columns {unknown or list(columns)} are not prediction-log columns {list(COLUMNS)}")
    if newest is not None and newest < 1:
        raise ValueError(f"newest must be positive, got {newest}")
    p = predictions.c
    label = None
    if LABEL in columns or labelled_only:
        # An outcome keyed by the gateway's request id wins over one keyed by the caller's id,
        # which wins over one keyed by the unit (the newest of each).
        label = sa.func.coalesce(_latest_label("request_id", p.request_id),
                                 _latest_label("request_id", p.client_request_id),
                                 _latest_label("unit_id", p.unit_id))
    selected = [label.label(LABEL) if c == LABEL else p[c] for c in columns]
    query = sa.select(*selected).select_from(predictions).where(p.endpoint == endpoint)
    if start is not None:
        query = query.where(p.created_at >= sa.literal(start, UtcDateTime))
    if end is not None:
        query = query.where(p.created_at < sa.literal(end, UtcDateTime))
    if role is not None:
        query = query.where(p.role == role)
    if labelled_only:
        query = query.where(label.is_not(None))
    if with_features:
        query = query.where(p.features.is_not(None))
    if not include_forced:
        query = query.where(sa.not_(p.forced))
    if newest is None:
        query = query.order_by(p.created_at, p.id)
    else:
        query = query.order_by(p.created_at.desc(), p.id.desc()).limit(newest)
    return query


def predictions_for_request(engine: Engine, request_id: str, columns: Sequence[str]) -> pd.DataFrame:
    """Every prediction-log row (live and shadow) of one request, found by the gateway's request id
    or by the id the caller sent (`client_request_id`): the rows an outcome keyed by that id labels.
    Both columns are indexed, so the lookup does not scan the log. Oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(request_query(request_id, columns)).all()
    frame = pd.DataFrame([tuple(row) for row in rows], columns=list(columns))
    if "created_at" in frame:
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame


def request_query(request_id: str, columns: Sequence[str]) -> sa.Select:
    """The SELECT behind `predictions_for_request` (kept apart so its plan can be checked)."""
    unknown = [c for c in columns if c not in COLUMNS or c == LABEL]
    if unknown or not columns:
        raise ValueError(f"columns {unknown or list(columns)} are not stored prediction-log columns "
                         f"{[c for c in COLUMNS if c != LABEL]}")
    p = predictions.c
    return (sa.select(*(p[c] for c in columns))
            .where(sa.or_(p.request_id == request_id, p.client_request_id == request_id))
            .order_by(p.created_at, p.id))


def missing_columns(engine: Engine, needed: Sequence[str]) -> list[str] | None:
    """The columns of `needed` that the database's `predictions` table lacks; None when the
    database has no such table. Raises SQLAlchemyError when the database cannot be read."""
    inspector = sa.inspect(engine)
    if not inspector.has_table(predictions.name):
        return None
    present = {c["name"] for c in inspector.get_columns(predictions.name)}
    return [c for c in needed if c not in present]


def _latest_label(key: str, value) -> sa.ScalarSelect:
    """The label of the newest outcome whose outcomes.<key> equals `value` (a column of the outer
    row), or NULL. A correlated lookup on outcomes' index of <key>: one index probe per row, so
    the plan does not depend on the tables' statistics. (A join to a ranked window over all
    outcomes let PostgreSQL, on statistics from before a bulk load, pick a nested loop that
    re-ranked the outcomes for every row: minutes for a few thousand rows.)"""
    o = outcomes.c
    return (sa.select(o.label).where(o[key] == value)
            .order_by(o.observed_at.desc(), o.id.desc()).limit(1).scalar_subquery())
