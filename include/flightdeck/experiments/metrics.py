"""Experiment metrics: the catalogue of what can be measured on the gateway's prediction log,
and the reader that turns the log and its outcomes into per-variant, per-unit, per-day sums.

Every metric is a ratio of two per-row quantities summed over a unit (a customer behind
`X-Unit-Id`, or a request): approval rate = approved rows / rows, default rate among approved =
defaults among approved labelled rows / approved labelled rows, log loss = Σ loss / labelled rows.
When every unit contributes exactly one row to a metric, the unit's value is that row's
value and the ordinary tests apply (two-proportion z, Welch t, CUPED); otherwise the
randomisation unit is not the unit of analysis and the delta method gives the variance
(`flightdeck.experiments.analysis` chooses). Rows are kept as sums per (variant, unit, day)
so any cumulative look (day 1, day 1..2, …) is a cheap re-aggregation.

The model scores the probability of default: a row is *approved* when its score is below
the decision threshold (`Settings.decision_threshold`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from flightdeck.serving.predlog_reads import Role, read_predictions

MetricKind = Literal["proportion", "mean", "ratio"]
Unit = Literal["unit_id", "request_id"]


@dataclass(frozen=True)
class MetricSpec:
    """One measurable quantity. `higher_is_better` tells a gain from a harm."""

    name: str
    kind: MetricKind
    higher_is_better: bool
    needs_labels: bool
    description: str
    unit: str = ""

    def harmful(self, difference: float) -> bool:
        """Whether a treatment − control difference goes the wrong way."""
        return difference < 0 if self.higher_is_better else difference > 0


METRICS: dict[str, MetricSpec] = {m.name: m for m in (
    MetricSpec("approval_rate", "proportion", True, False,
               "share of scored applications approved (score below the decision threshold)", "share"),
    MetricSpec("default_rate", "ratio", False, True,
               "share of approved, labelled applications that defaulted", "share"),
    MetricSpec("log_loss", "mean", False, True, "mean log loss of the score on labelled rows", "nats"),
    MetricSpec("brier", "mean", False, True, "mean squared error of the score on labelled rows", ""),
    MetricSpec("latency_ms", "mean", False, False, "gateway latency of a request, per scored row", "ms"),
    MetricSpec("mean_score", "mean", False, False, "mean predicted probability of default", ""),
)}

# Log loss of a score of exactly 0 or 1 on the wrong label is infinite; clip like scikit-learn.
_EPS = 1e-15
ROW_COLUMNS = ["request_id", "row_index", "unit_id", "variant", "model_version", "route_version", "score",
               "latency_ms", "created_at", "label"]
ASSIGNMENT_COLUMNS = ["unit", "variant", "day", "route_version"]


def num(metric: str) -> str:
    """Column holding a metric's numerator sum."""
    return f"{metric}__num"


def den(metric: str) -> str:
    """Column holding a metric's denominator sum."""
    return f"{metric}__den"


def day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """[first 00:00 UTC, day after last 00:00 UTC)."""
    return (datetime.combine(first, time(), tzinfo=UTC),
            datetime.combine(last + timedelta(days=1), time(), tzinfo=UTC))


def read_rows(engine: Engine, endpoint: str, start: datetime, end: datetime,
              role: Role = "live") -> pd.DataFrame:
    """Prediction-log rows of `endpoint` created in [start, end), with their label when one arrived.

    The label is the prediction log's (`flightdeck.serving.predlog_reads`: the latest outcome
    by request_id, else by unit_id); unlabelled rows are kept (label NaN): approval rate and
    latency need no label.
    """
    # Requests an admin forced onto a variant were not assigned by the experiment: left out.
    return read_predictions(engine, endpoint, ROW_COLUMNS, start=start, end=end, role=role, include_forced=False)


def row_values(rows: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Numerator and denominator of every catalogued metric, per row."""
    score = rows["score"].to_numpy(dtype="float64")
    label = rows["label"].to_numpy(dtype="float64")
    labelled = ~np.isnan(label)
    y = np.where(labelled, label, 0.0)
    approved = score < threshold
    clipped = np.clip(score, _EPS, 1 - _EPS)
    loss = -(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
    out = pd.DataFrame(index=rows.index)
    out[num("approval_rate")], out[den("approval_rate")] = approved.astype(float), 1.0
    out[num("default_rate")] = (approved & labelled & (y > 0.5)).astype(float)
    out[den("default_rate")] = (approved & labelled).astype(float)
    out[num("log_loss")], out[den("log_loss")] = np.where(labelled, loss, 0.0), labelled.astype(float)
    out[num("brier")] = np.where(labelled, (score - y) ** 2, 0.0)
    out[den("brier")] = labelled.astype(float)
    out[num("latency_ms")], out[den("latency_ms")] = rows["latency_ms"].to_numpy(dtype="float64"), 1.0
    out[num("mean_score")], out[den("mean_score")] = score, 1.0
    return out


@dataclass
class ExperimentData:
    """What the analysis needs, read once: sums per (variant, unit, day) and data-quality facts.

    `unit_days` columns: variant, unit, day (date), rows, then `<metric>__num` / `<metric>__den`
    for every catalogued metric. `pre_period` is indexed by unit with the same metric columns,
    summed over the pre-period (the CUPED covariate), or None.
    """

    unit_days: pd.DataFrame
    pre_period: pd.DataFrame | None = None
    rows_without_unit: int = 0
    unexpected_variants: dict[str, int] = field(default_factory=dict)
    units_in_several_variants: int = 0
    model_versions: dict[str, list[str]] = field(default_factory=dict)
    assignments: pd.DataFrame | None = None

    @property
    def days(self) -> list[date]:
        return sorted(set(self.unit_days["day"])) if len(self.unit_days) else []

    def units_through(self, day: date | None = None) -> pd.DataFrame:
        """Per (variant, unit) sums over every day up to and including `day` (all days if None)."""
        frame = self.unit_days if day is None else self.unit_days[self.unit_days["day"] <= day]
        return frame.drop(columns="day").groupby(["variant", "unit"], as_index=False, sort=True).sum()


def _metric_columns() -> list[str]:
    return [c for m in METRICS for c in (num(m), den(m))]


def aggregate(rows: pd.DataFrame, variants: list[str], threshold: float, unit: Unit = "unit_id",
              pre_rows: pd.DataFrame | None = None) -> ExperimentData:
    """Per (variant, unit, day) sums of `rows` (from `read_rows`), keeping only the experiment's variants.

    Nothing is dropped silently: rows without a unit id, rows of variants the definition does
    not name, and units seen in more than one variant (e.g. after a salt change) are counted
    and reported; the last are left out of the comparisons because their exposure is mixed.
    """
    columns = ["variant", "unit", "day", "rows", *_metric_columns()]
    rows = rows.copy()
    rows["unit"] = rows[unit]
    without_unit = int(rows["unit"].isna().sum())
    rows = rows[rows["unit"].notna()]
    known = rows["variant"].isin(variants)
    unexpected = rows.loc[~known, "variant"].value_counts().to_dict()
    rows = rows[known]
    assignments = _first_assignments(rows) if "route_version" in rows else None
    variants_per_unit = rows.groupby("unit")["variant"].nunique()
    mixed = set(variants_per_unit[variants_per_unit > 1].index)
    rows = rows[~rows["unit"].isin(mixed)]
    versions = {v: sorted(set(g)) for v, g in rows.groupby("variant")["model_version"]}
    if rows.empty:
        unit_days = pd.DataFrame(columns=columns)
    else:
        values = row_values(rows, threshold)
        values["variant"], values["unit"] = rows["variant"], rows["unit"]
        values["day"] = rows["created_at"].dt.date
        values["rows"] = 1
        unit_days = values.groupby(["variant", "unit", "day"], as_index=False, sort=True).sum()[columns]
    pre = None
    if pre_rows is not None and len(pre_rows):
        pre_rows = pre_rows[pre_rows[unit].notna()]
        values = row_values(pre_rows, threshold)
        values["unit"] = pre_rows[unit]
        pre = values.groupby("unit").sum()
    return ExperimentData(unit_days, pre, without_unit, {str(k): int(v) for k, v in unexpected.items()},
                          len(mixed), versions, assignments)


def _first_assignments(rows: pd.DataFrame) -> pd.DataFrame:
    """Each unit's first row (by created_at): the variant, day and route version it was assigned by."""
    if rows.empty:
        return pd.DataFrame(columns=ASSIGNMENT_COLUMNS)
    first = rows.sort_values("created_at", kind="stable").drop_duplicates("unit", keep="first")
    return pd.DataFrame({"unit": first["unit"].to_numpy(), "variant": first["variant"].to_numpy(),
                         "day": first["created_at"].dt.date.to_numpy(),
                         "route_version": first["route_version"].astype(int).to_numpy()})


def read_experiment(engine: Engine, endpoint: str, variants: list[str], first_day: date, last_day: date,
                    threshold: float, unit: Unit = "unit_id", pre_period_days: int | None = None) -> ExperimentData:
    """Read and aggregate an experiment's days [first_day, last_day] (and its CUPED pre-period)."""
    start, end = day_bounds(first_day, last_day)
    rows = read_rows(engine, endpoint, start, end)
    pre_rows = None
    if pre_period_days:
        pre_rows = read_rows(engine, endpoint, start - timedelta(days=pre_period_days), start)
    return aggregate(rows, variants, threshold, unit, pre_rows)
