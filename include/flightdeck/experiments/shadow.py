"""Shadow-mode evaluation: how a mirrored (shadow) model compares with the live one on the same rows.

The gateway logs every live row and, for mirrored requests, the shadow's row under the same
`request_id` and `row_index`. Joining them gives, on identical inputs: the agreement rate
at the decision threshold (Wilson interval), the score difference shadow − live (paired t
interval), the latency overhead of the shadow (paired by request), disagreement by feature
segment (categorical values and numeric quantile bins of the live row's `features`), the
most disagreeing examples, and — on rows whose outcome arrived — the log-loss difference.
From these comes a recommendation: `promote_with_canary`, `keep_shadowing` or `reject`.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine

from flightdeck.serving.predlog_reads import read_predictions

Recommendation = Literal["promote_with_canary", "keep_shadowing", "reject"]
_EPS = 1e-15


class ShadowCriteria(BaseModel):
    """Thresholds of the recommendation (the DAG's Params)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alpha: float = Field(0.05, gt=0, lt=0.5)
    min_pairs: int = Field(200, ge=2, description="Paired rows below which nothing is concluded.")
    max_disagreement: float = Field(0.05, ge=0, le=1, description="Acceptable share of differing decisions.")
    max_latency_overhead_ms: float = Field(20.0, ge=0, description="Acceptable extra latency of the shadow.")
    min_labelled_pairs: int = Field(200, ge=2, description="Labelled pairs needed to judge quality by outcomes.")
    segment_min_rows: int = Field(20, ge=1, description="Segments smaller than this are not ranked.")
    quantile_bins: int = Field(4, ge=2, le=20, description="Bins of a numeric feature.")
    top_examples: int = Field(10, ge=0, le=200)


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ShadowEvaluation:
    endpoint: str
    start: datetime
    end: datetime
    live_variants: dict[str, int]
    shadow_variant: str | None
    shadow_version: str | None
    pairs: int
    live_rows: int
    agreement: Interval | None = None
    score_difference: Interval | None = None
    latency_overhead_ms: Interval | None = None
    labelled_pairs: int = 0
    log_loss_difference: Interval | None = None
    log_loss_p_value: float | None = None
    segments: list[dict] = field(default_factory=list)
    examples: list[dict] = field(default_factory=list)
    recommendation: Recommendation = "keep_shadowing"
    reasons: list[str] = field(default_factory=list)
    criteria: ShadowCriteria = field(default_factory=ShadowCriteria)

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "criteria"}
        out.update(start=self.start.isoformat(), end=self.end.isoformat(), criteria=self.criteria.model_dump())
        return out


_COLUMNS = ["request_id", "row_index", "role", "variant", "model_version", "score", "latency_ms", "features",
            "label"]


def read_pairs(engine: Engine, endpoint: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Live and shadow rows of `endpoint` in [start, end), one row per (request_id, row_index)
    with live_* and shadow_* columns (shadow_* NaN when that request was not mirrored), the
    live row's features and its label (the prediction log's outcome join; NaN when none)."""
    rows = read_predictions(engine, endpoint, _COLUMNS, start=start, end=end, role=None)
    live = rows[rows["role"] == "live"].drop(columns="role")
    shadow = rows[rows["role"] == "shadow"].drop(columns=["role", "features", "label"])
    live = live.drop_duplicates(["request_id", "row_index"])
    live = live.rename(columns={c: f"live_{c}" for c in ("variant", "model_version", "score", "latency_ms")})
    shadow = shadow.rename(columns={c: f"shadow_{c}" for c in ("variant", "model_version", "score", "latency_ms")})
    shadow = shadow.drop_duplicates(["request_id", "row_index"])
    return live.merge(shadow, on=["request_id", "row_index"], how="left")


def _mean_interval(values: np.ndarray, alpha: float) -> Interval | None:
    from scipy import stats

    values = values[np.isfinite(values)]
    if len(values) < 2:
        return None
    if np.ptp(values) == 0:
        return Interval(float(values[0]), float(values[0]), float(values[0]))
    ci = stats.ttest_1samp(values, 0.0).confidence_interval(1 - alpha)
    return Interval(float(values.mean()), float(ci.low), float(ci.high))


def _segments(paired: pd.DataFrame, criteria: ShadowCriteria) -> list[dict]:
    """Disagreement rate per categorical value and per numeric quantile bin of the live features."""
    features = pd.DataFrame([json.loads(f) if isinstance(f, str) else {} for f in paired["features"]],
                            index=paired.index)
    out = []
    for name in features.columns:
        column = features[name]
        numeric = pd.to_numeric(column, errors="coerce")
        if numeric.notna().all() and column.map(lambda v: not isinstance(v, str)).all():
            try:
                groups = pd.qcut(numeric, criteria.quantile_bins, duplicates="drop")
            except ValueError:
                continue
            labels = groups.astype(str)
        else:
            labels = column.astype(str)
        frame = pd.DataFrame({"segment": labels, "disagree": paired["disagree"], "diff": paired["diff"]})
        for segment, group in frame.groupby("segment", observed=True):
            if len(group) >= criteria.segment_min_rows:
                out.append({"feature": str(name), "segment": str(segment), "rows": int(len(group)),
                            "disagreement_rate": float(group["disagree"].mean()),
                            "mean_abs_score_difference": float(group["diff"].abs().mean())})
    out.sort(key=lambda s: (-s["disagreement_rate"], -s["mean_abs_score_difference"]))
    return out


def evaluate_shadow(pairs: pd.DataFrame, endpoint: str, start: datetime, end: datetime, threshold: float,
                    criteria: ShadowCriteria | None = None) -> ShadowEvaluation:
    """Compare the shadow with the live answers on `pairs` (from `read_pairs`) and recommend."""
    from statsmodels.stats.proportion import proportion_confint

    criteria = criteria or ShadowCriteria()
    paired = pairs[pairs["shadow_score"].notna()].copy() if len(pairs) else pairs
    shadow_variants = paired["shadow_variant"].value_counts() if len(paired) else pd.Series(dtype=int)
    evaluation = ShadowEvaluation(
        endpoint, start, end, {str(k): int(v) for k, v in pairs["live_variant"].value_counts().items()}
        if len(pairs) else {}, str(shadow_variants.index[0]) if len(shadow_variants) else None,
        str(paired["shadow_model_version"].iloc[0]) if len(paired) else None, int(len(paired)), int(len(pairs)),
        criteria=criteria)
    if len(paired) < 2:
        evaluation.reasons = [f"insufficient data: {len(paired)} paired live/shadow row(s) "
                              f"(needs ≥ {criteria.min_pairs}); is a shadow configured on endpoint {endpoint!r}?"]
        return evaluation
    live, shadow = paired["live_score"].to_numpy(float), paired["shadow_score"].to_numpy(float)
    paired["disagree"] = (live >= threshold) != (shadow >= threshold)
    paired["diff"] = shadow - live
    agree = int((~paired["disagree"]).sum())
    low, high = proportion_confint(agree, len(paired), alpha=criteria.alpha, method="wilson")
    evaluation.agreement = Interval(agree / len(paired), float(low), float(high))
    evaluation.score_difference = _mean_interval(paired["diff"].to_numpy(float), criteria.alpha)
    per_request = paired.groupby("request_id")[["live_latency_ms", "shadow_latency_ms"]].first()
    evaluation.latency_overhead_ms = _mean_interval(
        (per_request["shadow_latency_ms"] - per_request["live_latency_ms"]).to_numpy(float), criteria.alpha)
    labelled = paired[paired["label"].notna()]
    evaluation.labelled_pairs = int(len(labelled))
    if len(labelled) >= 2:
        y = labelled["label"].to_numpy(float)

        def loss(s):
            s = np.clip(s, _EPS, 1 - _EPS)
            return -(y * np.log(s) + (1 - y) * np.log(1 - s))

        difference = loss(labelled["shadow_score"].to_numpy(float)) - loss(labelled["live_score"].to_numpy(float))
        evaluation.log_loss_difference = _mean_interval(difference, criteria.alpha)
        if np.ptp(difference) > 0:
            from scipy import stats

            evaluation.log_loss_p_value = float(stats.ttest_1samp(difference, 0.0).pvalue)
    evaluation.segments = _segments(paired, criteria)
    top = paired.reindex(paired["diff"].abs().sort_values(ascending=False).index).head(criteria.top_examples)
    evaluation.examples = [
        {"request_id": r.request_id, "row_index": int(r.row_index), "live_variant": r.live_variant,
         "live_score": float(r.live_score), "shadow_score": float(r.shadow_score), "difference": float(r.diff),
         "label": None if pd.isna(r.label) else float(r.label),
         "features": json.loads(r.features) if isinstance(r.features, str) else None}
        for r in top.itertuples()]
    evaluation.recommendation, evaluation.reasons = recommend(evaluation, criteria)
    return evaluation


def recommend(e: ShadowEvaluation, c: ShadowCriteria) -> tuple[Recommendation, list[str]]:
    """The migration recommendation and its reasons (the rule is in the report)."""
    if e.pairs < c.min_pairs:
        return "keep_shadowing", [f"insufficient data: {e.pairs} paired rows (needs ≥ {c.min_pairs})"]
    disagreement = Interval(1 - e.agreement.estimate, 1 - e.agreement.high, 1 - e.agreement.low)
    d_text = (f"the shadow decides differently on {disagreement.estimate:.1%} of rows "
              f"({1 - c.alpha:.0%} CI {disagreement.low:.1%}–{disagreement.high:.1%}; acceptable ≤ {c.max_disagreement:.1%})")
    lat = e.latency_overhead_ms
    lat_text = (f"latency overhead {lat.estimate:+.2f} ms (CI {lat.low:+.2f} to {lat.high:+.2f}; acceptable ≤ "
                f"{c.max_latency_overhead_ms:g} ms)" if lat else "latency overhead unknown")
    has_labels = e.labelled_pairs >= c.min_labelled_pairs and e.log_loss_difference is not None
    worse = better = False
    loss_text = f"{e.labelled_pairs} labelled pairs (needs ≥ {c.min_labelled_pairs} to judge by outcomes)"
    if has_labels:
        ll, p = e.log_loss_difference, e.log_loss_p_value
        significant = p is not None and p < c.alpha
        worse, better = significant and ll.estimate > 0, significant and ll.estimate < 0
        loss_text = (f"log loss shadow − live {ll.estimate:+.4f} (CI {ll.low:+.4f} to {ll.high:+.4f}, "
                     f"p = {p if p is not None else float('nan'):.3g}) on {e.labelled_pairs} labelled pairs")
    if lat is not None and lat.low > c.max_latency_overhead_ms:
        return "reject", [f"the shadow is too slow: {lat_text}", d_text, loss_text]
    if worse:
        return "reject", [f"the shadow predicts outcomes worse: {loss_text}", d_text, lat_text]
    latency_ok = lat is None or lat.high <= c.max_latency_overhead_ms
    if disagreement.low > c.max_disagreement:
        if better and latency_ok:
            return "promote_with_canary", [f"the shadow disagrees often but predicts outcomes better: {loss_text}",
                                           d_text, lat_text]
        if has_labels:
            return "reject", [f"{d_text}, without predicting outcomes better: {loss_text}", lat_text]
        return "keep_shadowing", [f"{d_text}; wait for labels to tell whether it is better", loss_text, lat_text]
    if disagreement.high <= c.max_disagreement and latency_ok:
        return "promote_with_canary", [d_text, lat_text, loss_text]
    return "keep_shadowing", ["not enough evidence either way yet", d_text, lat_text, loss_text]


def shadow_rule_text(c: ShadowCriteria) -> str:
    """The recommendation rule in words."""
    return (f"Fewer than {c.min_pairs} paired rows: keep shadowing. Reject when the shadow's extra latency is "
            f"surely above {c.max_latency_overhead_ms:g} ms (CI lower bound), or when, on at least "
            f"{c.min_labelled_pairs} labelled pairs, its log loss is significantly worse (paired t, α = {c.alpha:g}). "
            f"When its decisions surely differ on more than {c.max_disagreement:.1%} of rows, promote only if the "
            "labels show it is significantly better, reject if they show it is not, and keep shadowing while "
            f"labels are missing. Promote with a canary when the disagreement is surely at most "
            f"{c.max_disagreement:.1%} and the latency overhead surely at most {c.max_latency_overhead_ms:g} ms; "
            "otherwise keep shadowing.")


def disagreement_chart_png(e: ShadowEvaluation, max_segments: int = 15) -> bytes:
    """Two panels: disagreement rate of the most disagreeing segments; the score-difference summary."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    segments = e.segments[:max_segments][::-1]
    fig = Figure(figsize=(11, max(3.5, 0.3 * len(segments) + 1.5)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    seg_ax, sum_ax = fig.subplots(1, 2, width_ratios=[3, 2])
    if segments:
        seg_ax.barh([f"{s['feature']} = {s['segment']} (n={s['rows']})" for s in segments],
                    [s["disagreement_rate"] for s in segments], color="#2980b9")
        seg_ax.axvline(e.criteria.max_disagreement, color="#c0392b", linestyle="--",
                       label=f"acceptable {e.criteria.max_disagreement:.0%}")
        if e.agreement:
            seg_ax.axvline(1 - e.agreement.estimate, color="#222", linewidth=1,
                           label=f"overall {1 - e.agreement.estimate:.1%}")
        seg_ax.legend(loc="lower right", fontsize=8)
        seg_ax.tick_params(axis="y", labelsize=8)
    else:
        seg_ax.text(0.5, 0.5, "no segment with enough rows", ha="center", va="center", transform=seg_ax.transAxes)
    seg_ax.set_xlabel("share of rows where the decisions differ")
    seg_ax.set_title("Disagreement by feature segment (most disagreeing)")
    names, values, lows, highs = [], [], [], []
    for name, interval in (("score Δ (shadow − live)", e.score_difference),
                           ("log loss Δ (labelled)", e.log_loss_difference)):
        if interval is not None:
            names.append(name)
            values.append(interval.estimate)
            lows.append(interval.estimate - interval.low)
            highs.append(interval.high - interval.estimate)
    if names:
        sum_ax.errorbar(values, names, xerr=[lows, highs], fmt="o", color="#2c3e50", capsize=4)
        sum_ax.axvline(0, color="#7f8c8d", linewidth=1)
        sum_ax.set_ylim(-0.8, len(names) - 0.2)
    sum_ax.set_xlabel(f"difference with {1 - e.criteria.alpha:.0%} CI")
    sum_ax.set_title("Shadow − live on the same rows")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shadow evaluation {{ e.endpoint }}</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 72rem; }
 .badge { display: inline-block; padding: .2rem .6rem; border-radius: .3rem; color: #fff; font-weight: 600; }
 .promote_with_canary { background: #27ae60; } .reject { background: #c0392b; } .keep_shadowing { background: #7f8c8d; }
 table { border-collapse: collapse; margin: .5rem 0 1.5rem; font-size: .9rem; }
 th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: left; }
 td.num { text-align: right; font-variant-numeric: tabular-nums; }
 .rule { background: #f6f6f6; padding: .6rem; } img { max-width: 100%; } code { font-size: .8rem; }
</style></head><body>
<h1>Shadow evaluation: endpoint <code>{{ e.endpoint }}</code></h1>
<p>Shadow variant <strong>{{ e.shadow_variant or '–' }}</strong> (model version {{ e.shadow_version or '–' }}) against the
 live answers of {{ e.live_variants }}, rows logged in [{{ e.start }}, {{ e.end }}).</p>
<h2>Recommendation: <span class="badge {{ e.recommendation }}">{{ e.recommendation | replace('_', ' ') | upper }}</span></h2>
<ul>{% for r in e.reasons %}<li>{{ r }}</li>{% endfor %}</ul>
<p class="rule">{{ rule }}</p>
<h2>Summary</h2>
<table>
<tr><th>paired rows (live rows)</th><td class="num">{{ e.pairs }} ({{ e.live_rows }})</td></tr>
{% for name, i in intervals %}<tr><th>{{ name }}</th><td class="num">{% if i %}{{ fmt(i.estimate) }}
 [{{ fmt(i.low) }}, {{ fmt(i.high) }}]{% else %}–{% endif %}</td></tr>{% endfor %}
<tr><th>labelled pairs</th><td class="num">{{ e.labelled_pairs }}</td></tr>
<tr><th>log-loss p-value (paired t)</th><td class="num">{{ fmt(e.log_loss_p_value) }}</td></tr>
</table>
<img alt="disagreement by segment and shadow-live differences" src="data:image/png;base64,{{ png }}">
<h2>Disagreement by segment</h2>
<table><tr><th>feature</th><th>segment</th><th>rows</th><th>disagreement</th><th>mean |score Δ|</th></tr>
{% for s in e.segments[:40] %}<tr><td>{{ s.feature }}</td><td>{{ s.segment }}</td><td class="num">{{ s.rows }}</td>
<td class="num">{{ '%.1f%%' % (100 * s.disagreement_rate) }}</td><td class="num">{{ fmt(s.mean_abs_score_difference) }}</td></tr>
{% endfor %}</table>
<h2>Most disagreeing examples</h2>
<table><tr><th>request</th><th>live variant</th><th>live score</th><th>shadow score</th><th>Δ</th><th>label</th><th>features</th></tr>
{% for x in e.examples %}<tr><td><code>{{ x.request_id }}#{{ x.row_index }}</code></td><td>{{ x.live_variant }}</td>
<td class="num">{{ fmt(x.live_score) }}</td><td class="num">{{ fmt(x.shadow_score) }}</td><td class="num">{{ fmt(x.difference) }}</td>
<td>{{ x.label if x.label is not none else '–' }}</td><td><code>{{ x.features }}</code></td></tr>{% endfor %}
</table>
{% if extra %}<h2>Run</h2><table>{% for k, v in extra.items() %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>{% endif %}
</body></html>
"""


def render_shadow_report(out_dir, e: ShadowEvaluation, ds: str, extra: dict | None = None):
    """Write `out_dir/ds=<ds>/` (index.html with the chart embedded, disagreement.png, report.json)."""
    import base64

    from jinja2 import Environment

    from flightdeck.data.partitions import partition_path, staged_partition

    png = disagreement_chart_png(e)

    def fmt(value, digits=4):
        return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else (
            f"{value:.{digits}g}" if isinstance(value, float) else str(value))

    intervals = [("agreement at the decision threshold", e.agreement), ("score difference shadow − live",
                 e.score_difference), ("latency overhead (ms, per request)", e.latency_overhead_ms),
                 ("log-loss difference shadow − live", e.log_loss_difference)]
    html = Environment(autoescape=True).from_string(_TEMPLATE).render(
        e=e, rule=shadow_rule_text(e.criteria), png=base64.b64encode(png).decode("ascii"), fmt=fmt,
        intervals=intervals, extra=extra or {})
    with staged_partition(out_dir, ds) as staging:
        (staging / "disagreement.png").write_bytes(png)
        (staging / "index.html").write_text(html, encoding="utf-8")
        (staging / "report.json").write_text(json.dumps({**e.to_dict(), "extra": extra or {}}, indent=2,
                                                        default=str), encoding="utf-8")
    return partition_path(out_dir, ds) / "index.html"
