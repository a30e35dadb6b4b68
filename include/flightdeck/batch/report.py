"""The nightly batch report a person can open: one self-contained HTML page per day.

`render_batch_report` writes `out_dir/ds=YYYY-MM-DD/` atomically with
- `index.html`: summaries, the PSI table, volume, throughput and the chart embedded as a
  data URI, so the file can be attached to an alert or served on its own;
- `drift.png`: the same chart as a file;
- `report.json`: the numbers behind the page, for machines.

The statistics come from `flightdeck.batch.monitoring`; this module only renders them.
matplotlib and jinja2 are imported inside the functions so importing this module (e.g.
while Airflow parses a DAG file) stays cheap.
"""

from __future__ import annotations

import base64
import io
import json
import os
from datetime import date
from pathlib import Path
from typing import Any

from flightdeck.batch.monitoring import SCORE_NAME, DriftReport, VolumeReport
from flightdeck.data.partitions import partition_path, staged_partition

_DRIFTED = "#c0392b"
_STABLE = "#7f8c8d"
_SCORE = "#2c3e50"
_TODAY = "#2980b9"


def render_batch_report(
    out_dir: str | os.PathLike[str],
    ds: date | str,
    model_name: str,
    model_version: str,
    drift: DriftReport,
    volume: VolumeReport,
    rows_per_second: float,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the day's report folder `out_dir/ds=YYYY-MM-DD/`, replacing any previous one.

    Args:
        out_dir: Root of the report partitions (`Settings.reports_dir` / a job's subfolder).
        ds: The scored day.
        model_name, model_version: The model that produced the scores.
        drift: From `monitoring.drift_report`.
        volume: From `monitoring.volume_report`.
        rows_per_second: From `monitoring.throughput`.
        extra: More facts to list (e.g. run id, quarantined rows); values are shown as text.

    Returns:
        The path of `index.html`.
    """
    ds_text = partition_path(out_dir, ds).name.removeprefix("ds=")
    png = drift_chart_png(drift, volume)
    html = _render_html(
        ds_text, model_name, str(model_version), drift, volume, rows_per_second, extra or {}, png
    )
    facts = {
        "ds": ds_text,
        "model_name": model_name,
        "model_version": str(model_version),
        "drift": drift.to_dict(),
        "volume": volume.to_dict(),
        "rows_per_second": rows_per_second,
        "extra": extra or {},
    }
    with staged_partition(out_dir, ds) as staging:
        (staging / "drift.png").write_bytes(png)
        (staging / "index.html").write_text(html, encoding="utf-8")
        (staging / "report.json").write_text(
            json.dumps(facts, indent=2, sort_keys=True, default=str), encoding="utf-8"
        )
    return partition_path(out_dir, ds) / "index.html"


def drift_chart_png(drift: DriftReport, volume: VolumeReport) -> bytes:
    """Two panels as PNG bytes: PSI per feature (and the score) vs the threshold; volume."""
    # Figure + the Agg canvas directly, not pyplot: no global backend switch, no figure
    # registry to leak into, safe in a worker thread.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bars = sorted(drift.feature_psi.items(), key=lambda kv: kv[1])  # largest ends on top
    colors = [_DRIFTED if psi > drift.threshold else _STABLE for _, psi in bars]
    if drift.score_psi is not None:
        bars.append((f"{SCORE_NAME} (model)", drift.score_psi))
        colors.append(_DRIFTED if drift.score_drifted else _SCORE)

    height = max(4.0, 0.28 * len(bars) + 1.5)
    fig = Figure(figsize=(11, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    psi_ax, volume_ax = fig.subplots(1, 2, width_ratios=[3, 2])

    names = [name for name, _ in bars]
    values = [psi for _, psi in bars]
    psi_ax.barh(names, values, color=colors)
    psi_ax.axvline(drift.threshold, color=_DRIFTED, linestyle="--", linewidth=1,
                   label=f"alert threshold {drift.threshold:g}")
    psi_ax.set_xlabel("population stability index (PSI)")
    psi_ax.set_title("Drift against the training reference")
    psi_ax.tick_params(axis="y", labelsize=8)
    psi_ax.legend(loc="lower right", fontsize=8)

    labels = [f"d-{len(volume.trailing) - i}" for i in range(len(volume.trailing))] + ["today"]
    counts = [*volume.trailing, volume.rows]
    volume_ax.bar(labels, counts, color=[_STABLE] * len(volume.trailing)
                  + [_DRIFTED if volume.alert else _TODAY])
    if volume.trailing_mean is not None:
        low = volume.trailing_mean * (1 - volume.tolerance)
        high = volume.trailing_mean * (1 + volume.tolerance)
        volume_ax.axhspan(max(low, 0), high, color=_TODAY, alpha=0.1,
                          label=f"trailing mean ±{volume.tolerance:.0%}")
        volume_ax.axhline(volume.trailing_mean, color=_TODAY, linewidth=1)
        volume_ax.legend(loc="upper left", fontsize=8)
    volume_ax.set_ylabel("rows")
    volume_ax.set_title("Volume: trailing days vs today")
    volume_ax.tick_params(axis="x", labelsize=8, rotation=45)

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Batch report {{ ds }} — {{ model_name }} v{{ model_version }}</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 70rem; }
 .status { display: inline-block; padding: .2rem .6rem; border-radius: .3rem; color: #fff; }
 .alert { background: #c0392b; } .ok { background: #27ae60; }
 table { border-collapse: collapse; margin: .5rem 0 1.5rem; }
 th, td { border: 1px solid #ddd; padding: .25rem .6rem; text-align: left; }
 td.num { text-align: right; font-variant-numeric: tabular-nums; }
 tr.drifted { background: #fdecea; font-weight: 600; }
 pre { white-space: pre-wrap; background: #f6f6f6; padding: .6rem; }
 img { max-width: 100%; }
</style>
</head>
<body>
<h1>Batch report {{ ds }}</h1>
<p>Model <strong>{{ model_name }}</strong> version <strong>{{ model_version }}</strong>
 — <span class="status {{ 'alert' if alert else 'ok' }}">{{ 'ALERT' if alert else 'OK' }}</span></p>

<h2>Summary</h2>
<pre>{{ drift_summary }}
{{ volume_summary }}
Throughput: {{ '%.1f' % rows_per_second }} rows/s</pre>

<h2>Drift (PSI against the training reference, alert above {{ threshold }})</h2>
<table>
 <thead><tr><th>#</th><th>feature</th><th>PSI</th><th>status</th></tr></thead>
 <tbody>
 {% for name, psi, drifted in psi_rows %}
 <tr{% if drifted %} class="drifted"{% endif %}><td class="num">{{ loop.index }}</td><td>{{ name }}</td>
  <td class="num">{{ '%.4f' % psi }}</td><td>{{ 'drifted' if drifted else 'stable' }}</td></tr>
 {% endfor %}
 </tbody>
</table>
<p>Rows checked: {{ n_rows }}{% if sampled_rows is not none %} ({{ sampled_rows }} sampled){% endif %}.</p>

<h2>Volume and throughput</h2>
<table>
 <tr><th>rows today</th><td class="num">{{ volume.rows }}</td></tr>
 <tr><th>trailing days (oldest first)</th><td>{{ volume.trailing | join(', ') if volume.trailing else 'none' }}</td></tr>
 <tr><th>trailing mean</th><td class="num">{{ '%.1f' % volume.trailing_mean if volume.trailing_mean is not none else '—' }}</td></tr>
 <tr><th>ratio today / mean</th><td class="num">{{ '%.3f' % volume.ratio if volume.ratio is not none else '—' }}</td></tr>
 <tr><th>tolerance</th><td class="num">±{{ '%.0f' % (volume.tolerance * 100) }} %</td></tr>
 <tr><th>volume alert</th><td>{{ 'yes' if volume.alert else 'no' }}</td></tr>
 <tr><th>throughput</th><td class="num">{{ '%.1f' % rows_per_second }} rows/s</td></tr>
</table>
{% if extra %}
<h2>Run details</h2>
<table>
 {% for key, value in extra %}<tr><th>{{ key }}</th><td>{{ value }}</td></tr>
 {% endfor %}
</table>
{% endif %}

<h2>Chart</h2>
<img alt="PSI per feature and volume for {{ ds }}" src="data:image/png;base64,{{ png_base64 }}">
</body>
</html>
"""


def _render_html(
    ds: str,
    model_name: str,
    model_version: str,
    drift: DriftReport,
    volume: VolumeReport,
    rows_per_second: float,
    extra: dict[str, Any],
    png: bytes,
) -> str:
    import jinja2

    # Autoescape: model names, versions and extra values come from users and registries.
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    psi_rows = sorted(drift.feature_psi.items(), key=lambda kv: (-kv[1], kv[0]))
    rows = [(name, psi, psi > drift.threshold) for name, psi in psi_rows]
    if drift.score_psi is not None:
        rows.append((f"{SCORE_NAME} (model output)", drift.score_psi, drift.score_drifted))
    return env.from_string(_TEMPLATE).render(
        ds=ds,
        model_name=model_name,
        model_version=model_version,
        alert=drift.alert or volume.alert,
        drift_summary=drift.summary(),
        volume_summary=volume.summary(),
        rows_per_second=rows_per_second,
        threshold=f"{drift.threshold:g}",
        psi_rows=rows,
        n_rows=drift.n_rows,
        sampled_rows=drift.sampled_rows,
        volume=volume,
        extra=[(str(k), str(v)) for k, v in extra.items()],
        png_base64=base64.b64encode(png).decode("ascii"),
    )
