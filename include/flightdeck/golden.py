"""The golden-scores contract: rows and the source model's scores, logged with a training run.

Training logs the document (`golden_scores_document`, as the run artifact
`GOLDEN_SCORES_FILE`) next to the parity it measured at export (`PARITY_METRIC`). Whoever
later vouches for the registered bytes re-scores the rows through them and compares: the
release pre-flight before a promotion, the edge export before it converts a version.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flightdeck.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

GOLDEN_SCORES_FILE = "parity_golden.json"
"""Run artifact: rows and the source model's scores for them (see `golden_scores_document`)."""
PARITY_METRIC = "onnx_parity_max_abs_diff"
"""Run metric logged by training: max |Δp| ONNX vs scikit-learn, measured at export."""
GOLDEN_VERSION = 1
"""Layout version of the document; readers ignore a document of another version."""


def golden_scores_document(rows: pd.DataFrame, scores: Sequence[float]) -> dict[str, Any]:
    """The JSON document a parity re-check reads: input rows (column lists, as decoded JSON
    reaches `runtime.InputPlan`) and the *source* model's scores for them.

    Log it with the training run: `registry.log_json(run_id, golden_scores_document(...),
    GOLDEN_SCORES_FILE)`. Rows must be complete (the artifact refuses missing values).
    """
    scores = [float(s) for s in scores]
    if len(scores) != len(rows) or not rows.shape[0]:
        raise ConfigError("golden rows", f"{len(rows)} rows and {len(scores)} scores",
                          "pass at least one row and one score per row")
    columns = {str(name): rows[name].tolist() for name in rows.columns}
    if any(isinstance(v, float) and not math.isfinite(v) for values in columns.values() for v in values) \
            or not all(math.isfinite(s) for s in scores):
        raise ConfigError("golden rows", "they hold missing or non-finite values",
                          "use complete rows (as the parity check does)")
    return {"version": GOLDEN_VERSION, "columns": columns, "scores": scores}
