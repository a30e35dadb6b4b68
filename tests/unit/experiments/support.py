"""Synthetic prediction-log rows for experiment tests (the shape `metrics.read_rows` returns)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from flightdeck.experiments.definitions import parse_definition

START = date(2026, 12, 1)


def definition(**overrides):
    base = {"name": "t", "endpoint": "exp", "unit": "unit_id",
            "variants": {"a": {"alias": "champion", "weight": 0.5}, "b": {"alias": "challenger", "weight": 0.5}},
            "control": "a", "primary_metric": "log_loss", "secondary_metrics": ["approval_rate", "brier"],
            "guardrails": [{"metric": "latency_ms", "tolerance": 5}], "minimum_detectable_effect": 0.03,
            "start_date": START.isoformat(), "max_duration_days": 28, "policy": "sequential"}
    return parse_definition({**base, **overrides})


def rows(n: int = 2000, days: int = 4, share_b: float = 0.5, better_b: float = 0.0, seed: int = 1,
         rows_per_unit: int = 1, variants=("a", "b")) -> pd.DataFrame:
    """`n` units over `days` days; variant b's scores move towards the label by `better_b`."""
    rng = np.random.default_rng(seed)
    out = []
    start = datetime.combine(START, datetime.min.time(), tzinfo=UTC)
    for i in range(n):
        variant = variants[1] if rng.random() < share_b else variants[0]
        for k in range(rows_per_unit):
            y = float(rng.random() < 0.2)
            score = float(np.clip(rng.beta(2, 7) + (better_b * (y - 0.2) if variant == variants[1] else 0), 1e-3,
                                  1 - 1e-3))
            out.append({"request_id": f"r{i}-{k}", "row_index": 0, "unit_id": f"u{i}", "variant": variant,
                        "model_version": "2" if variant == variants[1] else "1", "score": score,
                        "latency_ms": float(rng.normal(5, 1)),
                        "created_at": start + timedelta(days=i * days // n, minutes=k), "label": y})
    return pd.DataFrame(out)
