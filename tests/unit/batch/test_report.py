"""The batch report: files, embedded chart, escaping and atomic replacement."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from datetime import date

import pytest

from flightdeck.batch.monitoring import DriftReport, volume_report
from flightdeck.batch.report import render_batch_report

DS = date(2024, 3, 5)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def drift() -> DriftReport:
    return DriftReport(
        feature_psi={"age": 0.41, "channel": 0.72, "region": 0.01, "credit_score": 0.25},
        score_psi=0.33,
        threshold=0.2,
        n_rows=2000,
    )


@pytest.fixture
def volume():
    return volume_report(600, [2000] * 7, tolerance=0.5)


def test_writes_png_and_self_contained_html(tmp_path, drift, volume):
    index = render_batch_report(tmp_path, DS, "credit-model", "7", drift, volume, 1234.5)
    folder = tmp_path / "ds=2024-03-05"
    assert index == folder / "index.html"
    assert (folder / "drift.png").read_bytes().startswith(PNG_SIGNATURE)

    html = index.read_text(encoding="utf-8")
    assert "2024-03-05" in html
    assert "credit-model" in html and "version <strong>7</strong>" in html
    marked = re.findall(r'<tr class="drifted"><td class="num">\d+</td><td>([^<]+)</td>', html)
    assert marked == [*drift.drifted_features, "score (model output)"]
    # Drifted rows come first, sorted by PSI.
    assert html.index("channel") < html.index("age") < html.index("credit_score") < html.index("region")
    assert "ALERT" in html and "1234.5 rows/s" in html and "600" in html
    # The chart is embedded, so the page stands alone.
    embedded = html.split("data:image/png;base64,", 1)[1].split('"', 1)[0]
    assert base64.b64decode(embedded).startswith(PNG_SIGNATURE)

    facts = json.loads((folder / "report.json").read_text())
    assert facts["drift"]["drifted_features"] == ["channel", "age", "credit_score"]
    assert facts["volume"]["alert"] is True


def test_escapes_hostile_values(tmp_path, drift, volume):
    hostile = "<script>alert('x')</script>"
    html = render_batch_report(
        tmp_path, DS, hostile, "1<b>", drift, volume, 1.0, extra={"note": "<img src=x onerror=1>"}
    ).read_text()
    assert "<script>" not in html and "<img src=x" not in html and "1<b>" not in html
    assert "&lt;script&gt;" in html


def test_second_write_replaces_the_folder(tmp_path, drift, volume):
    render_batch_report(tmp_path, "2024-03-05", "m", "1", drift, volume, 1.0)
    (tmp_path / "ds=2024-03-05" / "stale.txt").write_text("from the first run")
    calm = DriftReport({"age": 0.01}, None, 0.2, 10)
    render_batch_report(tmp_path, DS, "m", "2", calm, volume_report(10, [], 0.5), 1.0)

    folder = tmp_path / "ds=2024-03-05"
    assert sorted(p.name for p in folder.iterdir()) == ["drift.png", "index.html", "report.json"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("ds=")] == ["ds=2024-03-05"]
    html = (folder / "index.html").read_text()
    assert "version <strong>2</strong>" in html and "No drift" in html


def test_importing_the_module_does_not_import_matplotlib():
    code = "import sys, flightdeck.batch.report; print('matplotlib' in sys.modules, 'jinja2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
