"""Multiple metrics: Holm for guardrails (family-wise error), Benjamini-Hochberg for the rest.

Guardrails (latency, error rate, ...) must not regress: any false alarm costs a good
launch, and any miss ships a regression, so they control the family-wise error rate with
Holm's step-down method. The other (exploratory) metrics control the false discovery rate
with Benjamini-Hochberg. Both are statsmodels ``multipletests``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from flightdeck.errors import ConfigError


@dataclass(frozen=True)
class Adjusted:
    """A metric's raw and adjusted p-value and whether it is rejected after adjustment."""

    p_value: float
    adjusted_p_value: float
    reject: bool


def adjust(p_values: Mapping[str, float], *, method: Literal["holm", "fdr_bh"],
           alpha: float = 0.05) -> dict[str, Adjusted]:
    """Adjust the named p-values for multiplicity; keys keep their order."""
    from statsmodels.stats.multitest import multipletests

    if method not in ("holm", "fdr_bh"):
        raise ConfigError("method", f"unknown adjustment {method!r}", "use 'holm' or 'fdr_bh'")
    if not 0 < alpha < 1:
        raise ConfigError("alpha", f"must lie strictly between 0 and 1, got {alpha!r}", "use e.g. 0.05")
    for name, p in p_values.items():
        if not (isinstance(p, int | float) and math.isfinite(p) and 0 <= p <= 1):
            raise ConfigError(f"p_values.{name}", f"must be a probability, got {p!r}",
                              "leave metrics with insufficient data out of the adjustment")
    if not p_values:
        return {}
    names = list(p_values)
    reject, adjusted, _, _ = multipletests([float(p_values[n]) for n in names], alpha=alpha, method=method)
    return {name: Adjusted(float(p_values[name]), float(a), bool(r))
            for name, a, r in zip(names, adjusted, reject, strict=True)}
