"""Offline backtest: replay recent live traffic from the prediction log through the champion
and a challenger before any live traffic moves, and stop the rollout if the challenger is
worse beyond a margin.

The gateway logs each live row's input as a JSON object (`predictions.features`), and
outcomes (labels) arrive later by request_id or unit_id. `load_replay` reads the recent
rows with their labels; `backtest` scores them through both models with the one scoring
path (`runtime.InputPlan` feeds + `runtime.score_feeds`) and compares:

* on labelled rows: AUC and log loss of each model (`training.evaluate.classification_metrics`);
* on every replayed row: score-distribution shift (PSI over the gateway's ten score bins,
  `flightdeck.stats.psi`), agreement of the decisions at the threshold, mean |Δscore|;
* replay fidelity: the champion's replayed scores must equal the scores the gateway logged
  for rows the champion version served. If they do not, the log does not hold what was
  served (or the champion artifact changed) and no comparison built on it can be trusted.

Verdict: "fail" when the challenger loses more than `auc_margin` AUC or gains more than
`logloss_margin` log loss, or the replay is not faithful; "insufficient" with fewer than
`min_labelled_rows` labelled rows (the rollout plan decides whether that stops it);
"pass" otherwise. Rows a model cannot score (bad JSON, missing features, wrong types) are
counted and reported with reasons, never dropped silently.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import onnxruntime as ort
import pandas as pd
from sqlalchemy.engine import Engine

from flightdeck import runtime
from flightdeck.delivery.plan import BacktestSettings  # defined with the rollout plan it is part of
from flightdeck.errors import FlightdeckError
from flightdeck.serving.predlog_reads import read_predictions
from flightdeck.stats import psi, score_bin_counts
from flightdeck.training.evaluate import classification_metrics

if TYPE_CHECKING:  # the MLflow wrapper imports mlflow: only callers that pass one pay for it
    from flightdeck.registry import Registry

log = logging.getLogger(__name__)

Verdict = Literal["pass", "fail", "insufficient"]

REPLAY_COLUMNS = ["id", "request_id", "row_index", "unit_id", "variant", "model_version", "score",
                  "created_at", "features", "features_error", "label"]
_LOGGED_COLUMNS = [c for c in REPLAY_COLUMNS if c != "features_error"]
MAX_EXAMPLES = 5  # rejected rows quoted in a report, with their reasons


class BacktestFailedError(FlightdeckError):
    """The offline backtest stopped the rollout. Carries the report; the message has the numbers."""

    def __init__(self, report: BacktestReport) -> None:
        self.report = report
        super().__init__(
            f"offline backtest {report.verdict}: {report.reason}. Fix: keep the champion; "
            + ("collect more outcomes or widen the lookback, or let the plan skip an insufficient backtest"
               if report.verdict == "insufficient" else
               "retrain the challenger, or check the replay (see the report's fidelity and rejected rows)"))


# ---- replay ------------------------------------------------------------------------------------
def load_replay(engine: Engine, endpoint: str, since: datetime | None = None, limit: int | None = None,
                labelled_only: bool = False) -> pd.DataFrame:
    """The most recent live rows of `endpoint` that carry their logged input, oldest first.

    Rows logged without features (shadow rows, rows written before the column existed)
    cannot be replayed and are not read. Labels are the prediction log's
    (`flightdeck.serving.predlog_reads`: the latest outcome by request_id, else by unit_id);
    NaN where there is none (`labelled_only` keeps labelled rows only).

    Columns: id, request_id, row_index, unit_id, variant, model_version, score (logged),
    created_at (UTC), features (dict, None when the JSON is unusable), features_error
    (why, else missing), label (float or NaN).
    """
    rows = read_predictions(engine, endpoint, _LOGGED_COLUMNS, start=since, role="live", with_features=True,
                            labelled_only=labelled_only, newest=limit)
    decoded = [_decode(text) for text in rows["features"]]
    rows["features"] = pd.Series([features for features, _ in decoded], index=rows.index, dtype=object)
    rows["features_error"] = pd.Series([error for _, error in decoded], index=rows.index, dtype=object)
    return rows[REPLAY_COLUMNS]


def _decode(text: str) -> tuple[dict | None, str | None]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:
        return None, f"features are not valid JSON ({exc})"
    if not isinstance(value, dict):
        return None, f"features must be a JSON object, got {type(value).__name__}"
    return value, None


# ---- scoring -----------------------------------------------------------------------------------
def _session(model: ort.InferenceSession | bytes) -> ort.InferenceSession:
    return model if isinstance(model, ort.InferenceSession) else runtime.load_session(model)


def _score_rows(session: ort.InferenceSession, rows: list[dict | None]) -> tuple[np.ndarray, dict[int, str]]:
    """Scores of the rows the model accepts (NaN elsewhere) and, per rejected row, why.

    Rows without features (None) are neither scored nor counted here. All rows go through
    the input plan at once; only when that fails is each row checked on its own, so one bad
    row costs a slower pass, not a crash.
    """
    plan = runtime.InputPlan.of(session)
    names = (*plan.numeric, *plan.strings)
    scores = np.full(len(rows), np.nan)
    rejected: dict[int, str] = {}
    candidates = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):  # undecodable JSON: counted by the caller
            continue
        missing = [name for name in names if name not in row]
        if missing:
            rejected[index] = f"missing feature(s) {missing}"
        else:
            candidates.append(index)

    def columns(indices: list[int]) -> dict[str, list]:
        return {name: [rows[i][name] for i in indices] for name in names}

    accepted = candidates
    try:
        feeds = plan.feeds(columns(candidates)) if candidates else None
    except runtime.InvalidInputError:
        accepted = []
        for index in candidates:
            try:
                plan.feeds(columns([index]))
            except runtime.InvalidInputError as exc:
                rejected[index] = str(exc)
            else:
                accepted.append(index)
        feeds = plan.feeds(columns(accepted)) if accepted else None
    if feeds is not None:
        scores[accepted] = runtime.score_feeds(session, feeds)
    return scores, rejected


# ---- the report --------------------------------------------------------------------------------
def _number(value: Any) -> float | None:
    """A JSON-safe float: NaN and infinities become None."""
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


@dataclass(frozen=True)
class Fidelity:
    """Champion replayed vs logged, on the rows the champion version served."""

    champion_version: str | None
    checked_rows: int = 0
    mismatched_rows: int = 0
    # Served by the champion, yet not replayable now (counted among the rejected rows too).
    rejected_rows: int = 0
    max_abs_diff: float | None = None
    tolerance: float = 1e-9

    @property
    def faithful(self) -> bool | None:
        """True: every re-scored row matches; False: a mismatch; None: nothing to check."""
        if self.checked_rows == 0:
            return None
        return self.mismatched_rows == 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "faithful": self.faithful}


@dataclass(frozen=True)
class BacktestReport:
    """What the replay showed. JSON-safe through `to_dict`; `to_markdown` for people."""

    verdict: Verdict
    reasons: list[str]
    replayed_rows: int
    scored_rows: int
    labelled_rows: int
    threshold: float
    champion_version: str | None
    champion: dict[str, float] | None  # classification metrics on the labelled rows
    challenger: dict[str, float] | None
    auc_diff: float | None  # challenger − champion
    logloss_diff: float | None  # challenger − champion
    score_psi: float | None
    agreement_rate: float | None
    mean_abs_score_diff: float | None
    fidelity: Fidelity
    rejected: dict[str, int] = field(default_factory=dict)  # bad_json / champion / challenger / non_binary_label
    rejected_examples: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        """Every reason in one sentence, numbers included."""
        return "; ".join(self.reasons)

    def summary(self) -> str:
        return f"backtest {self.verdict}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fidelity"] = self.fidelity.to_dict()
        return data

    def enforce(self, on_insufficient: Literal["skip", "fail"] = "fail") -> BacktestReport:
        """Raise BacktestFailedError on "fail" (and on "insufficient" unless the policy is
        "skip", which logs a warning); return the report otherwise."""
        if self.verdict == "fail" or (self.verdict == "insufficient" and on_insufficient == "fail"):
            raise BacktestFailedError(self)
        if self.verdict == "insufficient":
            log.warning("%s; going on as the rollout plan skips an insufficient backtest", self.summary())
        return self

    def to_markdown(self) -> str:
        def show(value: float | None, digits: int = 4) -> str:
            return "n/a" if value is None else f"{value:.{digits}f}"

        def metric(side: dict | None, name: str) -> float | None:
            return None if side is None else side.get(name)

        champion = f"champion v{self.champion_version}" if self.champion_version else "champion"
        lines = [f"## Offline backtest: {self.verdict.upper()}", ""]
        lines += [f"- {reason}" for reason in self.reasons]
        lines += ["", f"Replayed {self.replayed_rows} live rows; {self.scored_rows} scored by both models, "
                      f"{self.labelled_rows} of them labelled.", "",
                  f"| metric | {champion} | challenger | challenger − champion |", "|---|---|---|---|",
                  f"| AUC | {show(metric(self.champion, 'roc_auc'))} | {show(metric(self.challenger, 'roc_auc'))} "
                  f"| {show(self.auc_diff)} |",
                  f"| log loss | {show(metric(self.champion, 'log_loss'))} "
                  f"| {show(metric(self.challenger, 'log_loss'))} | {show(self.logloss_diff)} |", "",
                  f"Score shift (all scored rows): PSI {show(self.score_psi)}, decisions agree on "
                  f"{show(None if self.agreement_rate is None else 100 * self.agreement_rate, 1)} % "
                  f"at threshold {self.threshold:g}, mean |Δscore| {show(self.mean_abs_score_diff)}.", ""]
        f = self.fidelity
        if f.faithful is None:
            lines.append("Replay fidelity: not checked (no logged rows of the champion version).")
        else:
            lines.append(f"Replay fidelity: {f.checked_rows} champion rows re-scored, {f.mismatched_rows} "
                         f"differ by more than {f.tolerance:g} (max |Δ| {f.max_abs_diff:.3g}), "
                         f"{f.rejected_rows} not replayable: {'faithful' if f.faithful else 'NOT faithful'}.")
        if any(self.rejected.values()):
            lines += ["", "Rows not compared: " + ", ".join(f"{k} {v}" for k, v in self.rejected.items() if v) + "."]
            lines += [f"- row {e['id']} (request {e['request_id']}): {e['reason']}" for e in self.rejected_examples]
        return "\n".join(lines) + "\n"


# ---- the backtest ------------------------------------------------------------------------------
def backtest(champion: ort.InferenceSession | bytes, challenger: ort.InferenceSession | bytes,
             replay: pd.DataFrame, settings: BacktestSettings | None = None, *,
             champion_version: str | None = None) -> BacktestReport:
    """Compare champion and challenger on replayed live rows (a `load_replay` frame).

    `champion_version` is the registry version of `champion`: rows logged with it must
    re-score to their logged score (the fidelity check); without it fidelity is not checked.
    """
    settings = settings or BacktestSettings()
    threshold = settings.threshold()
    champion_session, challenger_session = _session(champion), _session(challenger)
    n = len(replay)
    rows = list(replay["features"]) if n else []
    champion_scores, champion_rejected = _score_rows(champion_session, rows)
    challenger_scores, challenger_rejected = _score_rows(challenger_session, rows)

    logged = replay["score"].to_numpy(dtype=np.float64) if n else np.empty(0)
    versions = replay["model_version"].astype(str).to_numpy() if n else np.empty(0, dtype=object)
    fidelity = _fidelity(champion_version, versions, logged, champion_scores, champion_rejected,
                         settings.fidelity_tolerance)

    both = ~np.isnan(champion_scores) & ~np.isnan(challenger_scores)
    labels = replay["label"].to_numpy(dtype=np.float64) if n else np.empty(0)
    has_label = ~np.isnan(labels)
    binary = np.isin(labels, (0.0, 1.0))
    labelled = both & binary
    rejected = {"bad_json": int(sum(not isinstance(row, dict) for row in rows)), "champion": len(champion_rejected),
                "challenger": len(challenger_rejected), "non_binary_label": int((both & has_label & ~binary).sum())}
    examples = _examples(replay, champion_rejected, challenger_rejected)

    c, h = champion_scores[both], challenger_scores[both]
    shift = {"score_psi": None, "agreement_rate": None, "mean_abs_score_diff": None}
    if both.any():
        shift = {"score_psi": float(psi(_bins(c), _bins(h))),
                 "agreement_rate": float(np.mean((c >= threshold) == (h >= threshold))),
                 "mean_abs_score_diff": float(np.mean(np.abs(h - c)))}

    reasons: list[str] = []
    y = labels[labelled]
    champion_metrics = challenger_metrics = None
    auc_diff = logloss_diff = None
    if fidelity.faithful is False:
        reasons.append(
            f"replay is not faithful: {fidelity.mismatched_rows} of {fidelity.checked_rows} rows served by "
            f"champion v{champion_version} re-score differently from their logged score (max |Δ| "
            f"{fidelity.max_abs_diff:.3g} > {fidelity.tolerance:g}); the logged features or the champion "
            "artifact do not match what was served, so the comparison cannot be trusted")
    if len(y) < settings.min_labelled_rows or len(np.unique(y)) < 2:
        classes = "" if len(np.unique(y)) >= 2 or not len(y) else f" (one class only: {y[0]:g})"
        reasons.append(f"only {len(y)} labelled rows scored by both models{classes}; "
                       f"min_labelled_rows is {settings.min_labelled_rows}")
        verdict: Verdict = "fail" if fidelity.faithful is False else "insufficient"
        if len(y) and len(np.unique(y)) >= 2:
            champion_metrics = classification_metrics(y, champion_scores[labelled], threshold)
            challenger_metrics = classification_metrics(y, challenger_scores[labelled], threshold)
    else:
        champion_metrics = classification_metrics(y, champion_scores[labelled], threshold)
        challenger_metrics = classification_metrics(y, challenger_scores[labelled], threshold)
        worse = _compare(champion_metrics, challenger_metrics, settings, len(y))
        reasons += worse
        verdict = "fail" if worse or fidelity.faithful is False else "pass"
        if verdict == "pass":
            reasons.append(
                f"challenger AUC {challenger_metrics['roc_auc']:.4f} vs champion {champion_metrics['roc_auc']:.4f}, "
                f"log loss {challenger_metrics['log_loss']:.4f} vs {champion_metrics['log_loss']:.4f} on {len(y)} "
                f"labelled rows: within auc_margin {settings.auc_margin:g} and logloss_margin "
                f"{settings.logloss_margin:g}")
    if champion_metrics is not None:
        auc_diff = challenger_metrics["roc_auc"] - champion_metrics["roc_auc"]
        logloss_diff = challenger_metrics["log_loss"] - champion_metrics["log_loss"]
    if fidelity.faithful is None and champion_version is not None:
        reasons.append(f"replay fidelity unchecked: no replayed row was served by champion v{champion_version}")
    if rejected["challenger"]:
        reasons.append(f"{rejected['challenger']} of {n} replayed rows are rejected by the challenger's inputs "
                       f"(e.g. {next(iter(challenger_rejected.values()))})")

    report = BacktestReport(
        verdict=verdict, reasons=reasons, replayed_rows=n, scored_rows=int(both.sum()), labelled_rows=len(y),
        threshold=threshold, champion_version=champion_version,
        champion=_metrics_json(champion_metrics), challenger=_metrics_json(challenger_metrics),
        auc_diff=_number(auc_diff), logloss_diff=_number(logloss_diff), **shift, fidelity=fidelity,
        rejected=rejected, rejected_examples=examples, settings=settings.model_dump(mode="json"))
    log.info("%s", report.summary())
    return report


def backtest_versions(registry: Registry, engine: Engine, model_name: str, endpoint: str, champion_ref: str,
                      challenger_ref: str, settings: BacktestSettings | None = None,
                      now: datetime | None = None) -> BacktestReport:
    """Download both versions (numbers or aliases) and backtest them on `endpoint`'s recent
    live rows: the last `settings.lookback` before `now`, at most `settings.max_rows`."""
    settings = settings or BacktestSettings()
    champion_version, champion = registry.download_onnx(model_name, champion_ref)
    _, challenger = registry.download_onnx(model_name, challenger_ref)
    replay = load_replay(engine, endpoint, since=settings.since(now), limit=settings.max_rows)
    return backtest(champion, challenger, replay, settings, champion_version=champion_version)


def _compare(champion: dict[str, float], challenger: dict[str, float], settings: BacktestSettings,
             rows: int) -> list[str]:
    """Why the challenger is worse beyond the margins (empty when it is not)."""
    problems = []
    auc_c, auc_h = champion["roc_auc"], challenger["roc_auc"]
    if auc_h < auc_c - settings.auc_margin:
        problems.append(f"challenger AUC {auc_h:.4f} is {auc_c - auc_h:.4f} below champion AUC {auc_c:.4f} on "
                        f"{rows} labelled rows, more than auc_margin {settings.auc_margin:g}")
    ll_c, ll_h = champion["log_loss"], challenger["log_loss"]
    if ll_h > ll_c + settings.logloss_margin:
        problems.append(f"challenger log loss {ll_h:.4f} is {ll_h - ll_c:.4f} above champion log loss {ll_c:.4f} "
                        f"on {rows} labelled rows, more than logloss_margin {settings.logloss_margin:g}")
    return problems


def _fidelity(version: str | None, versions: np.ndarray, logged: np.ndarray, replayed: np.ndarray,
              rejected: dict[int, str], tolerance: float) -> Fidelity:
    if version is None:
        return Fidelity(None, tolerance=tolerance)
    served = versions == str(version)
    checked = served & ~np.isnan(replayed)
    diff = np.abs(replayed[checked] - logged[checked])
    return Fidelity(str(version), checked_rows=int(checked.sum()), mismatched_rows=int((diff > tolerance).sum()),
                    rejected_rows=sum(1 for i in rejected if served[i]),
                    max_abs_diff=float(diff.max()) if diff.size else None, tolerance=tolerance)


def _bins(scores: np.ndarray) -> np.ndarray:
    """Counts per score bin of the gateway's edges (out-of-range scores go to the end bins)."""
    return score_bin_counts(scores)


def _examples(replay: pd.DataFrame, champion: dict[int, str], challenger: dict[int, str]) -> list[dict]:
    examples = []
    errors = replay["features_error"].tolist() if len(replay) else []
    for index, error in enumerate(errors):
        if isinstance(error, str):  # pandas may hold "no error" as None or NaN
            reason = error
        elif index in challenger:
            reason = f"challenger: {challenger[index]}"
        elif index in champion:
            reason = f"champion: {champion[index]}"
        else:
            continue
        row = replay.iloc[index]
        examples.append({"id": int(row["id"]), "request_id": str(row["request_id"]),
                         "row_index": int(row["row_index"]), "reason": reason})
        if len(examples) == MAX_EXAMPLES:
            break
    return examples


def _metrics_json(metrics: dict[str, float] | None) -> dict[str, float | None] | None:
    return None if metrics is None else {k: _number(v) for k, v in metrics.items()}
