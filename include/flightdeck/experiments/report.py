"""The experiment report a person can open: one self-contained HTML page per experiment and day.

`render_experiment_report` writes `out_dir/ds=YYYY-MM-DD/` atomically with `index.html`
(the decision and its reasons, the stopping rule in words, a table of every test, and three
plots embedded as data URIs: lift with confidence intervals over time, cumulative assignment
with the sample-ratio check, power reached), the same plots as PNG files, and
`report.json` (the numbers, for machines). matplotlib and jinja2 are imported inside the
functions so importing this module stays cheap.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

from flightdeck.data.partitions import partition_path, staged_partition
from flightdeck.experiments.analysis import ExperimentAnalysis, stopping_rule_text

_COLORS = ["#2980b9", "#c0392b", "#27ae60", "#8e44ad", "#d35400", "#16a085"]
_GREY = "#7f8c8d"


def _figure(height: float = 3.6):
    # Figure + the Agg canvas directly, not pyplot: no global backend switch, safe in threads.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _days_axis(ax, days=()) -> None:
    """One tick per day at most, labelled by date (no hours: looks are daily); a single day is
    centred in a three-day window instead of a span of years."""
    from datetime import timedelta

    from matplotlib.dates import AutoDateLocator, DateFormatter

    if len(set(days)) == 1:
        ax.set_xlim(days[0] - timedelta(days=1), days[0] + timedelta(days=1))

    locator = AutoDateLocator(minticks=2, maxticks=10)
    locator.intervald[3] = [1, 2, 7, 14]  # DAILY: never finer than a day
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(DateFormatter("%Y-%m-%d"))


def _no_data(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color=_GREY)


def lift_chart_png(analysis: ExperimentAnalysis) -> bytes:
    """Difference of the primary metric (treatment − control) per day with its fixed-horizon
    CI and, for sequential policies, the always-valid confidence sequence."""
    d = analysis.definition
    fig = _figure()
    ax = fig.subplots()
    plotted = False
    for i, treatment in enumerate(d.treatments):
        points = [p for p in analysis.history if p.treatment == treatment and p.difference is not None]
        if not points:
            continue
        plotted = True
        color = _COLORS[i % len(_COLORS)]
        days = [p.day for p in points]
        ax.plot(days, [p.difference for p in points], marker="o", color=color,
                label=f"{treatment} − {d.control}")
        ax.fill_between(days, [p.ci_low for p in points], [p.ci_high for p in points], color=color, alpha=0.25,
                        label=f"{1 - d.alpha:.0%} CI (fixed horizon)")
        ax.errorbar(days, [p.difference for p in points], capsize=4, color=color, fmt="none",
                    yerr=[[p.difference - p.ci_low for p in points], [p.ci_high - p.difference for p in points]])
        if d.policy != "fixed":
            ax.plot(days, [p.sequential_ci_low for p in points], color=color, linestyle="--", linewidth=1,
                    label=f"{1 - d.alpha:.0%} always-valid CI (mSPRT)")
            ax.plot(days, [p.sequential_ci_high for p in points], color=color, linestyle="--", linewidth=1)
    ax.axhline(0, color="#222", linewidth=0.8)
    for sign in (-1, 1):
        ax.axhline(sign * d.minimum_detectable_effect, color=_GREY, linestyle=":", linewidth=1,
                   label="± minimum detectable effect" if sign > 0 else None)
    if not plotted:
        _no_data(ax, "no day has enough data for a comparison yet")
    ax.set_xlabel("day (cumulative data up to the end of the day, UTC)")
    ax.set_ylabel(f"Δ {d.primary_metric} (treatment − control)")
    ax.set_title(f"Lift of {d.primary_metric} over time")
    ax.legend(loc="best", fontsize=8)
    _days_axis(ax, [p.day for p in analysis.history])
    fig.autofmt_xdate()
    return _png(fig)


def assignment_chart_png(analysis: ExperimentAnalysis) -> bytes:
    """Cumulative units per variant against the expected split, and the SRM p-value per day."""
    d = analysis.definition
    fig = _figure(4.2)
    units_ax, srm_ax = fig.subplots(1, 2)
    first = d.treatments[0] if d.treatments else None
    points = [p for p in analysis.history if p.treatment == first]
    days = [p.day for p in points]
    total = [sum(p.units.values()) for p in points]
    for i, variant in enumerate(d.variants):
        color = _COLORS[i % len(_COLORS)]
        units_ax.plot(days, [p.units.get(variant, 0) for p in points], marker="o", color=color,
                      label=f"{variant} (observed)")
        if d.policy != "bandit":
            units_ax.plot(days, [t * d.variants[variant].weight for t in total], color=color, linestyle=":",
                          label=f"{variant} expected ({d.variants[variant].weight:.0%})")
    if not points:
        _no_data(units_ax, "no days yet")
    units_ax.set_xlabel("day")
    units_ax.set_ylabel("units assigned (cumulative)")
    units_ax.set_title("Cumulative assignment")
    units_ax.legend(loc="upper left", fontsize=8)
    srm_points = [(p.day, p.srm_p_value) for p in points if p.srm_p_value is not None]
    if srm_points:
        srm_ax.semilogy([day for day, _ in srm_points], [max(pv, 1e-300) for _, pv in srm_points], marker="o",
                        color=_COLORS[0], label="chi-square p-value")
        srm_ax.axhline(d.srm_threshold, color=_COLORS[1], linestyle="--",
                       label=f"mismatch below {d.srm_threshold:g}")
        srm_ax.set_ylim(top=1.5)
        srm_ax.legend(loc="lower left", fontsize=8)
    else:
        _no_data(srm_ax, "not checked (bandit weights not known)" if analysis.srm_note else "no units yet")
    srm_ax.set_xlabel("day")
    srm_ax.set_ylabel("SRM p-value (log scale)")
    srm_ax.set_title("Sample-ratio mismatch check")
    for ax in (units_ax, srm_ax):
        _days_axis(ax, days)
        for label in ax.get_xticklabels():
            label.set_rotation(30)
    return _png(fig)


def power_chart_png(analysis: ExperimentAnalysis) -> bytes:
    """Power to detect the minimum detectable effect at each day's sample size, against the target."""
    d = analysis.definition
    fig = _figure()
    ax = fig.subplots()
    plotted = False
    for i, treatment in enumerate(d.treatments):
        points = [p for p in analysis.history if p.treatment == treatment and p.power is not None]
        if points:
            plotted = True
            ax.plot([p.day for p in points], [p.power for p in points], marker="o", color=_COLORS[i % len(_COLORS)],
                    label=f"{treatment} vs {d.control}")
    ax.axhline(d.power, color=_COLORS[1], linestyle="--", label=f"target power {d.power:g}")
    if not plotted:
        _no_data(ax, "no baseline yet: power cannot be computed")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("day")
    ax.set_ylabel(f"power for Δ = {d.minimum_detectable_effect:g}")
    ax.set_title(f"Power reached ({d.primary_metric}, fixed-horizon formula at α = {d.alpha:g})")
    ax.legend(loc="upper left", fontsize=8)
    _days_axis(ax, [p.day for p in analysis.history])
    fig.autofmt_xdate()
    return _png(fig)


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Experiment {{ d.name }} — {{ a.as_of }}</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 72rem; }
 .badge { display: inline-block; padding: .2rem .6rem; border-radius: .3rem; color: #fff; font-weight: 600; }
 .ship { background: #27ae60; } .stop { background: #c0392b; } .keep_running { background: #7f8c8d; }
 table { border-collapse: collapse; margin: .5rem 0 1.5rem; font-size: .9rem; }
 th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: left; }
 td.num { text-align: right; font-variant-numeric: tabular-nums; }
 tr.reject { background: #eafaf1; } tr.harm { background: #fdecea; font-weight: 600; }
 .rule { background: #f6f6f6; padding: .6rem; }
 img { max-width: 100%; }
</style>
</head>
<body>
<h1>Experiment {{ d.name }}</h1>
<p>{{ d.description }}</p>
<p>Endpoint <code>{{ d.endpoint }}</code>, unit <code>{{ d.unit }}</code>, policy <strong>{{ d.policy }}</strong>,
 day {{ a.day_index }} of at most {{ d.max_duration_days }} (started {{ d.start_date }}, data up to the end of
 {{ a.as_of }} UTC).</p>

<h2>Decision: <span class="badge {{ a.decision.action }}">{{ a.decision.action | upper }}</span>
 <small>({{ a.decision.status }}{% if a.decision.ship_variant %}, ship {{ a.decision.ship_variant }}{% endif %})</small></h2>
<ul>{% for reason in a.decision.reasons %}<li>{{ reason }}</li>{% endfor %}</ul>

<h2>Stopping rule</h2>
<p class="rule">{{ rule }}</p>

<h2>Lift over time</h2>
<img alt="lift of the primary metric with confidence intervals over time" src="data:image/png;base64,{{ lift }}">

<h2>Assignment and sample-ratio check</h2>
<img alt="cumulative assignment per variant and SRM p-value" src="data:image/png;base64,{{ assignment }}">
<table>
<tr><th>variant</th><th>model version(s)</th><th>expected share</th><th>units</th><th>observed share</th></tr>
{% for v, n in a.units.items() %}<tr><td>{{ v }}</td><td>{{ versions.get(v, []) | join(', ') or '–' }}</td>
<td class="num">{{ '%.1f%%' % (100 * d.variants[v].weight) }}</td><td class="num">{{ n }}</td>
<td class="num">{{ '%.1f%%' % (100 * n / total_units) if total_units else '–' }}</td></tr>{% endfor %}
</table>
<p>{% if a.srm %}SRM chi-square = {{ '%.3g' % a.srm.chi2 }}, p = {{ '%.3g' % a.srm.p_value }}
 (mismatch below {{ a.srm.threshold }}): <strong>{{ 'MISMATCH' if a.srm.p_value < a.srm.threshold else 'no mismatch' }}</strong>
{% else %}SRM not checked ({{ a.srm_note or 'no units yet' }}).{% endif %}</p>
<p>Data quality: {{ notes.rows_without_unit }} row(s) without a unit id,
 {{ notes.units_in_several_variants }} unit(s) seen in more than one variant (left out),
 rows of variants outside the definition: {{ notes.unexpected_variants or 'none' }}.</p>

<h2>Power reached</h2>
<img alt="power for the minimum detectable effect over time" src="data:image/png;base64,{{ power_png }}">
<table>
<tr><th>treatment</th><th>baseline ({{ d.primary_metric }})</th><th>sd per unit</th><th>units per arm needed</th>
<th>units control / treatment</th><th>power now</th><th>reached</th></tr>
{% for p in a.power %}<tr><td>{{ p.treatment }}</td><td class="num">{{ fmt(p.baseline) }}</td><td class="num">{{ fmt(p.sd) }}</td>
<td class="num">{{ p.required_per_arm if p.required_per_arm is not none else '–' }}</td>
<td class="num">{{ p.units_control }} / {{ p.units_treatment }}</td><td class="num">{{ fmt(p.power, 3) }}</td>
<td>{{ 'yes' if p.reached else 'no' }}</td></tr>{% endfor %}
</table>

<h2>Every test</h2>
<p>Differences are treatment − control. "p (decides)" is the always-valid mSPRT p-value for sequential policies
and the fixed-horizon p-value otherwise; "adjusted" applies Holm (primary, guardrails) or Benjamini-Hochberg
(secondary metrics).</p>
<table>
<tr><th>role</th><th>metric</th><th>treatment</th><th>method</th><th>n control / treatment</th><th>control</th>
<th>treatment</th><th>difference</th><th>lift</th><th>{{ '%.0f' % (100 * (1 - d.alpha)) }}% CI (fixed)</th>
<th>p (fixed)</th><th>always-valid CI</th><th>p (mSPRT)</th><th>p (decides)</th><th>adjusted</th><th>result</th></tr>
{% for r in a.results %}{% set c = r.comparison %}{% set s = r.sequential %}
<tr class="{{ 'harm' if r.harmful else ('reject' if r.reject else '') }}"><td>{{ r.role }}</td><td>{{ r.metric }}</td>
<td>{{ r.treatment }}</td>
{% if c %}<td>{{ c.method }}</td><td class="num">{{ c.n_control }} / {{ c.n_treatment }}</td>
<td class="num">{{ fmt(c.control_value) }}</td><td class="num">{{ fmt(c.treatment_value) }}</td>
<td class="num">{{ fmt(c.difference) }}</td>
<td class="num">{{ '%+.1f%%' % (100 * c.relative_lift) if c.relative_lift is not none else '–' }}</td>
<td class="num">[{{ fmt(c.ci_low) }}, {{ fmt(c.ci_high) }}]</td><td class="num">{{ fmt(c.p_value, 3) }}</td>
<td class="num">[{{ fmt(s.ci_low) }}, {{ fmt(s.ci_high) }}]</td><td class="num">{{ fmt(s.p_value, 3) }}</td>
<td class="num">{{ fmt(r.decision_p_value, 3) }}</td><td class="num">{{ fmt(r.adjusted_p_value, 3) }}</td>
<td>{{ 'harm' if r.harmful else ('significant' if r.reject else 'not significant') }}</td>
{% else %}<td colspan="13">{{ r.note }}</td>{% endif %}</tr>{% endfor %}
</table>

<h2>Daily history ({{ d.primary_metric }})</h2>
<table>
<tr><th>day</th><th>treatment</th><th>units</th><th>SRM p</th><th>difference</th><th>CI (fixed)</th>
<th>always-valid CI</th><th>p (mSPRT)</th><th>power</th></tr>
{% for h in a.history %}<tr><td>{{ h.day }}</td><td>{{ h.treatment }}</td><td>{{ h.units }}</td>
<td class="num">{{ fmt(h.srm_p_value, 3) }}</td><td class="num">{{ fmt(h.difference) }}</td>
<td class="num">[{{ fmt(h.ci_low) }}, {{ fmt(h.ci_high) }}]</td>
<td class="num">[{{ fmt(h.sequential_ci_low) }}, {{ fmt(h.sequential_ci_high) }}]</td>
<td class="num">{{ fmt(h.sequential_p_value, 3) }}</td><td class="num">{{ fmt(h.power, 3) }}</td></tr>{% endfor %}
</table>
{% if extra %}<h2>Run</h2><table>{% for k, v in extra.items() %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>{% endif %}
</body>
</html>
"""


def render_experiment_report(out_dir: str | os.PathLike[str], analysis: ExperimentAnalysis,
                             extra: dict | None = None) -> Path:
    """Write `out_dir/ds=<as_of>/` (index.html, the three PNGs, report.json); return index.html's path.

    A re-run of the same day replaces the folder whole.
    """
    from jinja2 import Environment

    pngs = {"lift": lift_chart_png(analysis), "assignment": assignment_chart_png(analysis),
            "power": power_chart_png(analysis)}
    encoded = {k: base64.b64encode(v).decode("ascii") for k, v in pngs.items()}
    html = Environment(autoescape=True).from_string(_TEMPLATE).render(
        a=analysis, d=analysis.definition, rule=stopping_rule_text(analysis.definition), fmt=_fmt,
        lift=encoded["lift"], assignment=encoded["assignment"], power_png=encoded["power"],
        versions=analysis.data_notes.get("model_versions", {}), notes=analysis.data_notes,
        total_units=sum(analysis.units.values()), extra=extra or {})
    with staged_partition(out_dir, analysis.as_of) as staging:
        for name, data in pngs.items():
            (staging / f"{name}.png").write_bytes(data)
        (staging / "index.html").write_text(html, encoding="utf-8")
        (staging / "report.json").write_text(json.dumps({**analysis.to_dict(), "extra": extra or {}}, indent=2,
                                                        default=str), encoding="utf-8")
    return partition_path(out_dir, analysis.as_of) / "index.html"
