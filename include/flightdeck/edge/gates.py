"""The export gates and the result table.

* Float exports reproduce their source within `float_tolerance` (max |Δp| on holdout rows):
  ONNX float against scikit-learn's scores, TFLite float32 against the Keras student.
* Quantised and distilled artifacts lose at most `auc_loss_max` of the champion's holdout
  ROC AUC, relative: (AUC_champion − AUC_artifact) / AUC_champion ≤ 0.5 % by default.

`apply_gates` fills each row's verdict and returns the misses, each naming the artifact
and by how much it missed; `GateError` carries them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from flightdeck.edge.errors import GateError

FLOAT_TOLERANCE = 1e-5
AUC_LOSS_MAX = 0.005


@dataclass
class ArtifactRow:
    """One line of the table: an artifact, how it runs, and what it costs and loses."""

    name: str
    runtime: str  # "onnxruntime", "litert", "keras" (the student, not shipped)
    kind: str  # "float", "quantised", "distilled", "not_applicable"
    size_bytes: int | None = None
    latency_us: float | None = None  # median single-row latency
    auc: float | None = None
    float_source: str | None = None  # what max_abs_diff compares against
    max_abs_diff: float | None = None
    distilled: bool = False
    note: str = ""
    verdict: str = ""
    checks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def apply_gates(rows: list[ArtifactRow], champion_auc: float, float_tolerance: float = FLOAT_TOLERANCE,
                auc_loss_max: float = AUC_LOSS_MAX) -> list[str]:
    """Judge every row; returns the misses ('artifact: what, by how much')."""
    misses: list[str] = []
    for row in rows:
        row.checks, failed = [], []
        if row.kind == "not_applicable":
            row.verdict = "n/a"
            continue
        if row.kind == "float":
            ok = row.max_abs_diff is not None and row.max_abs_diff <= float_tolerance
            row.checks.append(f"max |Δp| vs {row.float_source} {row.max_abs_diff:.2g} ≤ {float_tolerance:.0e}")
            if not ok:
                failed.append(f"max |Δp| vs {row.float_source} = {row.max_abs_diff:.3g} exceeds "
                              f"{float_tolerance:.0e} by {row.max_abs_diff - float_tolerance:.3g}")
        if row.kind in ("quantised", "distilled") or row.distilled:
            loss = (champion_auc - row.auc) / champion_auc
            row.checks.append(f"AUC loss {loss:.3%} ≤ {auc_loss_max:.1%}")
            if not loss <= auc_loss_max:
                failed.append(f"AUC {row.auc:.4f} loses {loss:.3%} of the champion's {champion_auc:.4f}, "
                              f"{loss - auc_loss_max:.3%} over the {auc_loss_max:.1%} budget")
        row.verdict = "fail" if failed else "pass"
        misses += [f"{row.name}: {miss}" for miss in failed]
    return misses


def check_gates(rows: list[ArtifactRow], champion_auc: float, float_tolerance: float = FLOAT_TOLERANCE,
                auc_loss_max: float = AUC_LOSS_MAX) -> None:
    """Raise GateError naming every miss."""
    misses = apply_gates(rows, champion_auc, float_tolerance, auc_loss_max)
    if misses:
        raise GateError(misses)


def markdown_table(rows: list[ArtifactRow], champion_auc: float) -> str:
    """The table logged to MLflow and printed in the task log."""
    lines = [f"champion holdout ROC AUC: {champion_auc:.4f}", "",
             "| artifact | runtime | kind | size (bytes) | 1-row latency (µs) | AUC | max abs Δp (vs) | gate | note |",
             "|---|---|---|---:|---:|---:|---|---|---|"]
    for r in rows:
        diff = f"{r.max_abs_diff:.2g} ({r.float_source})" if r.max_abs_diff is not None else "-"
        lines.append(f"| {r.name} | {r.runtime} | {r.kind}{' (distilled)' if r.distilled and r.kind != 'distilled' else ''}"
                     f" | {r.size_bytes if r.size_bytes is not None else '-'}"
                     f" | {f'{r.latency_us:.0f}' if r.latency_us is not None else '-'}"
                     f" | {f'{r.auc:.4f}' if r.auc is not None else '-'} | {diff} | {r.verdict}"
                     f" | {r.note} |")
    return "\n".join(lines)
