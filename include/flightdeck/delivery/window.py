"""What one variant did over a window of time: the counts and sums every metric gate reads.

Both metric sources (the gateway's stats endpoint and Prometheus) produce `VariantWindow`s,
so the gates never know where the numbers came from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Prediction scores are probabilities: ten equal bins on [0, 1], the same edges as the
# gateway's `flightdeck_score` histogram, so both sources bin scores identically.
SCORE_EDGES: tuple[float, ...] = tuple(i / 10 for i in range(11))
N_SCORE_BINS = len(SCORE_EDGES) - 1


def score_bin(score: float) -> int:
    """Index of the bin of `score` (values outside [0, 1] fall in the first or last bin)."""
    return min(max(int(score * N_SCORE_BINS), 0), N_SCORE_BINS - 1)


@dataclass(frozen=True)
class VariantWindow:
    """Counts and sums of one variant over one window.

    `requests` counts every request (failed ones too) and `latency_*` covers them all, in
    seconds; `rows` counts scored rows and `score_bins` their scores per bin of
    `SCORE_EDGES`. `shadow_rows` / `shadow_disagreements` are filled for a variant that ran
    as a shadow: rows it scored and rows whose decision differed from the live answer.
    `latency_sumsq` is exact from the gateway's stats and estimated from histogram buckets
    by the Prometheus source.
    """

    requests: int = 0
    errors: int = 0
    latency_sum: float = 0.0
    latency_sumsq: float = 0.0
    rows: int = 0
    score_bins: tuple[int, ...] = field(default_factory=lambda: (0,) * N_SCORE_BINS)
    shadow_rows: int = 0
    shadow_disagreements: int = 0

    def __post_init__(self) -> None:
        if len(self.score_bins) != N_SCORE_BINS:
            raise ValueError(f"score_bins needs {N_SCORE_BINS} counts, got {len(self.score_bins)}")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["score_bins"] = list(self.score_bins)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> VariantWindow:
        return cls(**{**data, "score_bins": tuple(data.get("score_bins") or (0,) * N_SCORE_BINS)})
