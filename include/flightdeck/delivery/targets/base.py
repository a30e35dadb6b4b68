"""The contract every deployment target keeps.

A rollout has a *baseline* (the version serving today) and a *candidate*. Every method
sets an absolute state rather than applying a change, so calling it twice, or again after
the process running it was killed, leaves the target exactly as the plan says: that is
what makes clearing and re-running a promotion task safe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol


@dataclass(frozen=True)
class TrafficState:
    """Who serves what on a target: the baseline, the candidate (if deployed) and its share.

    `revision` and `changed_at` (epoch seconds) say since when the target has been in this
    state, where the target knows (the gateway's route version): a metric gate's window starts
    there, so a re-run of a step that changed nothing keeps the window it had.
    """

    target: str
    baseline: str
    candidate: str | None
    candidate_percent: float
    revision: int | None = None
    changed_at: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class DeliveryTarget(Protocol):
    """A place a model version is rolled out to."""

    name: str

    def state(self) -> TrafficState:
        """What the target serves now."""

    def deploy(self) -> TrafficState:
        """Put the candidate beside the baseline with no live traffic (idle colour / 0 % canary)."""

    def set_weight(self, percent: float) -> TrafficState:
        """Send `percent` (0–100) of live traffic to the candidate, the rest to the baseline."""

    def promote(self) -> TrafficState:
        """All traffic to the candidate, which becomes the new baseline."""

    def rollback(self) -> TrafficState:
        """All traffic to the baseline; the candidate takes none."""

    def variant_names(self) -> tuple[str, str]:
        """(baseline, candidate): the variant names under which the metric sources report them."""
