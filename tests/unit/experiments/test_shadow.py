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
