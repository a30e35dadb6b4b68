"""Shadow evaluation: pairing, intervals, segments and the recommendation."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from flightdeck.experiments.shadow import ShadowCriteria, evaluate_shadow, render_shadow_report

T0, T1 = datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)


def pairs(n=1000, shift=0.0, noise=0.01, latency=1.0, labelled=True, seed=3):
    rng = np.random.default_rng(seed)
    live = rng.beta(2, 5, n)
    y = (rng.random(n) < live).astype(float)
    region = rng.choice(["north", "south"], n)
    shadow = np.clip(live + noise * rng.standard_normal(n) + shift * (region == "south"), 0, 1)
    return pd.DataFrame({
        "request_id": [f"r{i}" for i in range(n)], "row_index": 0, "live_variant": "a", "live_model_version": "1",
        "live_score": live, "live_latency_ms": 5 + rng.random(n), "shadow_variant": "s",
        "shadow_model_version": "3", "shadow_score": shadow, "shadow_latency_ms": 5 + latency + rng.random(n),
        "features": [json.dumps({"region": r, "age": float(a)}) for r, a in zip(region, rng.integers(20, 70, n),
                                                                                strict=True)],
        "label": y if labelled else np.nan})


def test_a_near_copy_is_promoted_with_a_canary():
    e = evaluate_shadow(pairs(), "credit", T0, T1, 0.5)
    assert e.recommendation == "promote_with_canary", e.reasons
    assert e.agreement.estimate > 0.95 and e.agreement.low < e.agreement.estimate < e.agreement.high
    assert e.latency_overhead_ms.low < 1.0 < e.latency_overhead_ms.high
    assert e.pairs == 1000 and e.labelled_pairs == 1000


def test_a_model_that_disagrees_in_one_segment_and_predicts_worse_is_rejected_and_the_segment_named():
    e = evaluate_shadow(pairs(shift=0.4), "credit", T0, T1, 0.5)
    assert e.recommendation == "reject" and "worse" in e.reasons[0]
    assert (e.segments[0]["feature"], e.segments[0]["segment"]) == ("region", "south")
    assert abs(e.examples[0]["difference"]) >= abs(e.examples[-1]["difference"])
    assert any(s["feature"] == "age" for s in e.segments)  # numeric quantile bins


@pytest.mark.parametrize("frame, expected, words", [
    (pairs(shift=0.4, labelled=False), "keep_shadowing", "wait for labels"),
    (pairs(latency=50), "reject", "too slow"),
    (pairs(50), "keep_shadowing", "insufficient data"),
    (pairs(10).assign(shadow_score=np.nan), "keep_shadowing", "insufficient data"),
])
def test_other_recommendations(frame, expected, words):
    e = evaluate_shadow(frame, "credit", T0, T1, 0.5)
    assert e.recommendation == expected and words in " ".join(e.reasons)


def test_the_shadow_report_renders(tmp_path):
    e = evaluate_shadow(pairs(shift=0.4), "credit", T0, T1, 0.5, ShadowCriteria(top_examples=5))
    html = render_shadow_report(tmp_path, e, "2026-12-01").read_text()
    assert "REJECT" in html and html.count("data:image/png;base64,") == 1 and "region" in html
    assert html.count("<code>r") == 5


def test_read_pairs_joins_shadow_to_live_rows_and_labels_the_live_ones(tmp_path):
    from flightdeck.experiments.shadow import read_pairs
    from flightdeck.serving import db
    from flightdeck.serving.predlog import Outcome, OutcomeStore, PredictionRecord, _insert_rows

    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    db.upgrade(url)
    engine = db.engine_for(url)

    def row(request_id, role, score, unit=None, hour=12, endpoint="credit"):
        variant, version = ("s", "3") if role == "shadow" else ("a", "1")
        return PredictionRecord(request_id, 0, unit, endpoint, variant, version, 1, role, "h", score,
                                5.0 if role == "live" else 7.5, False, T0.replace(hour=hour),
                                '{"age": 40}' if role == "live" else None)

    with db.write_transaction(engine) as conn:
        _insert_rows(conn, [(T0, [row("r1", "live", 0.2, "u1"), row("r1", "shadow", 0.3, "u1"),
                                  row("r2", "live", 0.6, "u2"), row("r3", "live", 0.4, "u3", hour=0, endpoint="x"),
                                  row("r4", "live", 0.9, "u4", hour=23), row("r4", "shadow", 0.1, "u4", hour=23)])])
    OutcomeStore(engine).record([Outcome("r1", None, 1.0, T1), Outcome(None, "u2", 0.0, T1)])
    paired = read_pairs(engine, "credit", T0, T1).set_index("request_id")
    db.dispose_engine(url)

    assert list(paired.index) == ["r1", "r2", "r4"]
    assert paired.loc["r1", ["live_score", "shadow_score", "shadow_latency_ms"]].tolist() == [0.2, 0.3, 7.5]
    assert np.isnan(paired.loc["r2", "shadow_score"])  # not mirrored
    assert paired.loc["r1", "label"] == 1.0 and paired.loc["r2", "label"] == 0.0  # by request, then by unit
    assert np.isnan(paired.loc["r4", "label"]) and paired.loc["r4", "features"] == '{"age": 40}'
    assert "shadow_features" not in paired and "shadow_label" not in paired
