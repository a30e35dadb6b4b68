"""The experiment report: one self-contained page with the three plots and every test."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta

from flightdeck.experiments.analysis import analyse
from flightdeck.experiments.metrics import aggregate
from flightdeck.experiments.report import render_experiment_report
from tests.unit.experiments.support import START, definition, rows


def test_the_report_embeds_three_png_plots_and_a_row_per_test(tmp_path):
    d = definition()
    analysis = analyse(d, aggregate(rows(1500, better_b=0.25), list(d.variants), 0.5), START + timedelta(days=3))
    index = render_experiment_report(tmp_path, analysis, extra={"run": "manual__x"})
    html = index.read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 3
    assert all(base64.b64decode(i).startswith(b"\x89PNG") and len(i) > 10_000 for i in images)
    assert {p.name for p in index.parent.iterdir()} == {"index.html", "lift.png", "assignment.png", "power.png",
                                                        "report.json"}
    assert "SHIP" in html and "Stopping rule" in html and "mSPRT" in html and "manual__x" in html
    for r in analysis.results:
        assert f"<td>{r.metric}</td>" in html
    assert json.loads((index.parent / "report.json").read_text())["decision"]["action"] == "ship"


def test_a_report_without_data_still_renders(tmp_path):
    d = definition()
    analysis = analyse(d, aggregate(rows(0).reindex(columns=rows(2).columns), ["a", "b"], 0.5), START)
    html = render_experiment_report(tmp_path, analysis).read_text()
    assert "KEEP_RUNNING" in html and "insufficient data" in html
