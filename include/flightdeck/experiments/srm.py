"""Sample-ratio mismatch (SRM): did the traffic split come out as configured?

A chi-square goodness-of-fit test (scipy ``chisquare``) of the units observed per variant
against the configured shares. A mismatch means assignment or logging is broken (a
variant crashing before it logs, bots hitting one arm, a sticky hash that is not uniform),
so every metric comparison is suspect: p < `threshold` (0.001 by default, strict because
the check runs on every analysis) blocks every decision. On 20,000 units a 52/48 split
gives p ≈ 2e-8 (blocked) and 50/50 gives p = 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from flightdeck.errors import ConfigError
from flightdeck.experiments.inference import InsufficientDataError

DEFAULT_THRESHOLD = 0.001


@dataclass(frozen=True)
class SrmResult:
    """Observed units per variant against the expected shares, and the chi-square test."""

    observed: dict[str, int]
    expected_share: dict[str, float]
    chi2: float
    p_value: float
    threshold: float = DEFAULT_THRESHOLD

    @property
    def mismatch(self) -> bool:
        """The split is off: block every decision until the cause is found."""
        return self.p_value < self.threshold

    @property
    def observed_share(self) -> dict[str, float]:
        total = sum(self.observed.values())
        return {k: v / total for k, v in self.observed.items()}

    def to_dict(self) -> dict:
        return {**asdict(self), "mismatch": self.mismatch, "observed_share": self.observed_share}


def srm_check(observed: Mapping[str, int], expected_share: Mapping[str, float],
              threshold: float = DEFAULT_THRESHOLD) -> SrmResult:
    """Chi-square test of units per variant against `expected_share` (relative weights, normalised).

    A variant in `expected_share` with no units counts as 0 observed (that is an SRM, not
    missing data); a variant observed but not expected is an error.
    """
    if not 0 < threshold < 1:
        raise ConfigError("threshold", f"must lie strictly between 0 and 1, got {threshold!r}",
                          "use 0.001")
    if len(expected_share) < 2:
        raise ConfigError("expected_share", f"needs at least two variants, got {list(expected_share)}",
                          "give every variant's configured traffic share")
    unknown = sorted(set(observed) - set(expected_share))
    if unknown:
        raise ConfigError("observed", f"variants {unknown} are not in the expected shares "
                          f"{sorted(expected_share)}", "add their configured share or fix the variant names")
    for name, share in expected_share.items():
        if not (isinstance(share, int | float) and math.isfinite(share) and share > 0):
            raise ConfigError(f"expected_share.{name}", f"must be a positive share, got {share!r}",
                              "give each variant its configured weight")
    for name, count in observed.items():
        if not (isinstance(count, int | np.integer) and count >= 0):
            raise ConfigError(f"observed.{name}", f"must be a non-negative integer, got {count!r}",
                              "count the units assigned to the variant")
    names = list(expected_share)
    counts = np.array([int(observed.get(name, 0)) for name in names], dtype=float)
    total = counts.sum()
    if total == 0:
        raise InsufficientDataError("sample ratio", "every variant", "no units observed yet")
    shares = np.array([float(expected_share[name]) for name in names])
    shares = shares / shares.sum()
    chi2, p_value = stats.chisquare(counts, f_exp=shares * total)
    return SrmResult({name: int(c) for name, c in zip(names, counts, strict=True)},
                     {name: float(s) for name, s in zip(names, shares, strict=True)},
                     float(chi2), float(p_value), threshold)
