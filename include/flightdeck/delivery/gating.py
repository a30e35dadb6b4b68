"""One look of a metric gate: read both windows from the metric source, test, decide.

The Airflow trigger calls `look_once` every few seconds; tests and the demo call it
directly. Inputs and output are JSON-safe so the trigger can be stored and its event read
back by the sensor.
"""

from __future__ import annotations

from flightdeck.delivery.gates import GateSettings, decide, evaluate
from flightdeck.delivery.release import WindowSelector
from flightdeck.delivery.sources import make_source
from flightdeck.delivery.sources.base import WindowStart, by_variant
from flightdeck.delivery.window import VariantWindow


def read_windows(source: dict, selector: WindowSelector, since: WindowStart) -> tuple[VariantWindow, VariantWindow]:
    """(baseline, candidate) windows since the step began; empty windows while there is no data.

    Windows are summed per variant: a request a fallback answered is counted under the
    fallback's model version, yet it is the failing variant's error. A rollout pins one
    version per variant, so the variant name alone says which side a window is."""
    metrics = make_source(**source)
    live = by_variant(metrics.windows(since, role="live"))
    baseline = live.get(selector.baseline_variant, VariantWindow())
    if selector.candidate_role == "live":
        candidate = live.get(selector.candidate_variant, VariantWindow())
    else:
        shadow = by_variant(metrics.windows(since, role=selector.candidate_role))
        candidate = shadow.get(selector.candidate_variant, VariantWindow())
    return baseline, candidate


def look_once(source: dict, selector: dict, since: dict, gates: dict, alpha: float, *, elapsed_s: float,
              bake_s: float, max_s: float, final: bool, fixed_baseline: dict | None = None) -> dict:
    """Evaluate the gate once. `fixed_baseline` replaces the live baseline window (the
    post-promotion bake compares the new champion with the old one's last step); then, and
    for a shadow candidate, the windows do not split one stream of requests and the
    error-increase check does not apply."""
    chosen = WindowSelector(**selector)
    baseline, candidate = read_windows(source, chosen, WindowStart(**since))
    if fixed_baseline is not None:
        baseline = VariantWindow.from_dict(fixed_baseline)
    # The error-increase test needs both windows to split one stream of live requests.
    split_traffic = fixed_baseline is None and chosen.candidate_role == "live"
    report = evaluate(baseline, candidate, GateSettings.model_validate(gates), alpha, split_traffic=split_traffic)
    decision = decide(report, elapsed_s=elapsed_s, bake_s=bake_s, max_s=max_s, final=final)
    return {"decision": decision.outcome, "reason": decision.reason, "report": report.to_dict(),
            "baseline": baseline.to_dict(), "candidate": candidate.to_dict(), "elapsed_s": round(elapsed_s, 1)}
