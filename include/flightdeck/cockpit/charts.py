"""Inline SVG pictures for the cockpit's pages (no JavaScript, no image files).

`confidence_sequence_svg` draws one check of a release across its gate windows in time order:
each window's always-valid interval for canary − baseline as a bar, its estimate as a dot, the
non-inferiority margin as a dashed line and zero as a solid one. A bar wholly above the margin
is a failure, wholly below it a proof of non-inferiority.
"""

from __future__ import annotations

import math
from html import escape

STATUS_COLOURS = {"pass": "#2f855a", "fail": "#c53030", "undecided": "#b7791f", "insufficient": "#718096"}
PALETTE = ("#3182ce", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795")


def _scale(lo: float, hi: float, top: float, bottom: float):
    span = (hi - lo) or 1.0
    return lambda v: bottom - (v - lo) / span * (bottom - top)


def _fmt(value: float, unit: str) -> str:
    if unit == "rate":
        return f"{100 * value:+.2f} pp"
    if unit == "ms":
        return f"{value:+.1f} ms"
    return f"{value:+.3f}"


def confidence_sequence_svg(title: str, unit: str, points: list[dict], width: int = 560, height: int = 220) -> str:
    """`points`: [{"label", "estimate", "lower", "upper", "threshold", "status"}] in time order;
    points without an interval are drawn as labels only. Returns an `<svg>` element."""
    left, right, top, bottom = 70, width - 10, 28, height - 42
    values = [0.0]
    for p in points:
        values += [v for v in (p.get("lower"), p.get("upper"), p.get("estimate"), p.get("threshold"))
                   if v is not None and math.isfinite(v)]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or 1e-3
    lo, hi = lo - pad, hi + pad
    y = _scale(lo, hi, top, bottom)
    n = max(len(points), 1)
    step = (right - left) / n
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="cs" width="{width}" height="{height}" '
             f'role="img" aria-label="{escape(title)}">',
             f'<text x="{left}" y="16" class="t">{escape(title)}</text>',
             f'<line x1="{left}" x2="{right}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#4a5568"/>',
             f'<text x="{left - 6}" y="{y(0) + 4:.1f}" text-anchor="end" class="a">0</text>']
    thresholds = {p["threshold"] for p in points if p.get("threshold") is not None}
    for t in sorted(thresholds):
        parts.append(f'<line x1="{left}" x2="{right}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#c53030" '
                     f'stroke-dasharray="5,4"/>')
        parts.append(f'<text x="{right}" y="{y(t) - 4:.1f}" text-anchor="end" class="a">margin '
                     f'{escape(_fmt(t, unit))}</text>')
    for i, p in enumerate(points):
        x = left + step * (i + 0.5)
        colour = STATUS_COLOURS.get(p.get("status") or "", "#4a5568")
        if p.get("lower") is not None and p.get("upper") is not None:
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y(p["lower"]):.1f}" y2="{y(p["upper"]):.1f}" '
                         f'stroke="{colour}" stroke-width="6" stroke-linecap="round" opacity="0.75">'
                         f'<title>{escape(p["label"])}: [{escape(_fmt(p["lower"], unit))}, '
                         f'{escape(_fmt(p["upper"], unit))}] {escape(p.get("status") or "")}</title></line>')
        if p.get("estimate") is not None:
            parts.append(f'<circle cx="{x:.1f}" cy="{y(p["estimate"]):.1f}" r="4" fill="#1a202c"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle" class="a">{escape(p["label"])}</text>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 30}" text-anchor="middle" class="a" fill="{colour}">'
                     f'{escape(p.get("status") or "–")}</text>')
    parts.append("</svg>")
    return "".join(parts)


def split_svg(rows: list[tuple[str, float | None, float | None]], width: int = 420) -> str:
    """Configured weight against live share per variant: two stacked bars.
    `rows`: [(variant, weight %, live share %)]."""
    bar_left, bar_width, height = 80, width - 90, 62
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="split" width="{width}" height="{height}" role="img" '
             'aria-label="traffic split">']
    for row_index, (label, pick) in enumerate((("configured", 1), ("live", 2))):
        y = 6 + row_index * 26
        parts.append(f'<text x="0" y="{y + 14}" class="a">{label}</text>')
        x = float(bar_left)
        total = sum((r[pick] or 0.0) for r in rows)
        if not total:
            parts.append(f'<rect x="{bar_left}" y="{y}" width="{bar_width}" height="18" fill="#edf2f7"/>'
                         f'<text x="{bar_left + 6}" y="{y + 13}" class="a">no {label} traffic yet</text>')
            continue
        for i, r in enumerate(rows):
            share = (r[pick] or 0.0) / total
            if share <= 0:
                continue
            w = share * bar_width
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="18" fill="{PALETTE[i % len(PALETTE)]}">'
                         f'<title>{escape(r[0])}: {100 * share:.1f} %</title></rect>')
            if w > 40:
                parts.append(f'<text x="{x + 4:.1f}" y="{y + 13}" class="b">{escape(r[0])} {100 * share:.0f} %</text>')
            x += w
    parts.append("</svg>")
    return "".join(parts)


def cs_panels(gates) -> list[str]:
    """One picture per sequential check present in the gates' reports (error rate, latency, shadow)."""
    pictures = []
    for name, title in (("error_rate", "error rate: canary − baseline, always-valid interval per gate window"),
                        ("latency", "mean latency: canary − baseline, always-valid interval per gate window"),
                        ("shadow_disagreement", "shadow disagreement rate, always-valid interval")):
        points, unit = [], "rate"
        for gate in gates:
            check = next((c for c in gate.checks if c.name == name), None)
            if check is None:
                continue
            unit = check.unit
            points.append({"label": gate.label, "estimate": check.estimate, "lower": check.lower,
                           "upper": check.upper, "threshold": check.threshold, "status": check.status})
        if points:
            pictures.append(confidence_sequence_svg(title, unit, points))
    return pictures
