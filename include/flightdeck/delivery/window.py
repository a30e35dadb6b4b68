"""What one variant did over a window of time: the counts and sums every metric gate reads.

Every metric source (the gateway's stats endpoint, Prometheus, CloudWatch) produces `VariantWindow`s,
so the gates never know where the numbers came from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from flightdeck.stats import N_SCORE_BINS


@dataclass(frozen=True)
class VariantWindow:
    """Counts and sums of one variant over one window.

    `requests` counts every request (failed ones too) and `latency_*` covers them all, in
    seconds; `rows` counts scored rows and `score_bins` their scores per bin of
    `flightdeck.stats.SCORE_EDGES`. `shadow_rows` / `shadow_disagreements` are filled for a
    variant that ran as a shadow: rows it scored and rows whose decision differed from the
    live answer.
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
