"""Pre-flight checks of a promotion, run before any live traffic moves.

* `check_artifact`: the candidate version exists, its ONNX artifact downloads and loads in
  ONNX Runtime, and it still reproduces its source model. The strongest evidence is a
  re-check: golden rows with the source model's scores (`GOLDEN_SCORES_FILE`, logged with
  the training run) re-scored through the downloaded bytes. Without them the check falls
  back to the parity the export measured and logged (`PARITY_METRIC`). The result says
  which evidence was used.
* `check_log_compatibility`: the gateway database is at the schema head and its prediction
  log has the columns the gateway writes, and the candidate takes the inputs the baseline
  takes (so callers already send them and logged rows can be replayed in a backtest).

Nothing here imports Airflow; failures are FlightdeckErrors a DAG task can fail with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import onnxruntime as ort
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from flightdeck import runtime
from flightdeck.config import Settings, get_settings
from flightdeck.errors import ConfigError, FlightdeckError, ModelNotFoundError, ParityError
from flightdeck.golden import GOLDEN_SCORES_FILE, GOLDEN_VERSION, PARITY_METRIC
from flightdeck.serving import db
from flightdeck.serving.predlog import PredictionRecord
from flightdeck.serving.predlog_reads import missing_columns as log_missing_columns

if TYPE_CHECKING:  # the MLflow wrapper imports mlflow: only callers that pass one pay for it
    from flightdeck.registry import Registry

ParityEvidence = Literal["golden_scores", "recorded_metric"]
ModelInputs = ort.InferenceSession | bytes | Mapping[str, str]
"""A model's inputs: a session, the artifact's bytes, or {input name: ONNX type} as
`input_schema` returns, e.g. {"age": "tensor(double)", "region": "tensor(string)"}."""

# Every column the gateway's prediction-log writer inserts, plus the key.
PREDICTION_LOG_COLUMNS: tuple[str, ...] = ("id", *PredictionRecord._fields)


class ArtifactError(FlightdeckError):
    """A registered version's ONNX artifact cannot be downloaded, loaded or vouched for."""

    def __init__(self, model: str, version: str, problem: str, fix: str) -> None:
        self.model = model
        self.version = version
        super().__init__(f"model {model!r} version {version}: {problem}. Fix: {fix}.")


# ---- artifact ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArtifactCheck:
    """A version that exists, loads in ONNX Runtime, and reproduces its source model."""

    model: str
    ref: str
    version: str
    run_id: str | None
    sha256: str
    size_bytes: int
    inputs: dict[str, str]
    parity_evidence: ParityEvidence
    parity_max_abs_diff: float
    parity_tolerance: float
    parity_rows: int | None  # golden rows re-scored; None when the recorded metric was used
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_artifact(registry: Registry, name: str, ref: str, settings: Settings | None = None) -> ArtifactCheck:
    """Prove version/alias `ref` of model `name` is deployable.

    Raises ModelNotFoundError (listing the aliases that exist), ArtifactError (download,
    load or missing parity evidence) or ParityError (beyond `settings.parity_tolerance`).
    """
    settings = settings or get_settings()
    tolerance = settings.parity_tolerance
    try:
        found = registry.get_version(name, ref)
    except ModelNotFoundError as exc:
        aliases = registry.aliases(name)
        known = (", ".join(f"{alias} -> version {v}" for alias, v in sorted(aliases.items()))
                 if aliases else "none: the model has no aliases or is not registered")
        what = f"version {ref}" if ref.isdigit() else f"alias {ref!r}"
        raise ModelNotFoundError(
            name, what, fix=f"pass a version number or an alias that exists (aliases: {known}); "
                            "register a version first with the train_register DAG if there is none") from exc
    version = str(found.version)
    run_id = getattr(found, "run_id", None) or None
    try:
        _, model_bytes = registry.download_onnx(name, version)
    except Exception as exc:  # MlflowException, OSError, transport errors: the store, not a bug of ours
        raise ArtifactError(name, version, f"its ONNX artifact cannot be downloaded ({exc})",
                            "check the MLflow artifact store is reachable, or re-register the version") from exc
    try:
        session = runtime.load_session(model_bytes)
    except Exception as exc:  # onnxruntime raises its own types for bad protobufs, opsets, graphs
        raise ArtifactError(name, version, f"ONNX Runtime cannot load its artifact ({exc})",
                            "re-export and register it with the train_register DAG") from exc
    output = _output_problem(session)
    if output:
        raise ArtifactError(name, version, output, "export it with flightdeck.training.export.to_onnx")

    notes: list[str] = []
    golden = _golden(registry, run_id, notes)
    if golden is not None:
        diff, rows = _recheck(session, golden, name, version)
        evidence: ParityEvidence = "golden_scores"
        notes.append(f"re-scored {rows} golden rows through the downloaded artifact")
    else:
        diff, rows = _recorded(registry, run_id, name, version), None
        evidence = "recorded_metric"
        notes.append(f"no golden scores: used the run's recorded {PARITY_METRIC} (measured at export, "
                     "not re-checked against these bytes)")
    if not diff <= tolerance:
        raise ParityError(f"model {name!r} version {version} ({evidence.replace('_', ' ')})", diff, tolerance)
    return ArtifactCheck(model=name, ref=ref, version=version, run_id=run_id,
                         sha256=hashlib.sha256(model_bytes).hexdigest(), size_bytes=len(model_bytes),
                         inputs=input_schema(session), parity_evidence=evidence, parity_max_abs_diff=float(diff),
                         parity_tolerance=tolerance, parity_rows=rows, notes=notes)


def _golden(registry: Registry, run_id: str | None, notes: list[str]) -> dict | None:
    if run_id is None:
        notes.append("the version has no training run: no golden scores to re-check")
        return None
    try:
        document = registry.load_json(run_id, GOLDEN_SCORES_FILE)
    except FlightdeckError:
        return None  # not logged for this run: the caller falls back to the recorded metric
    if not isinstance(document, dict) or document.get("version") != GOLDEN_VERSION:
        notes.append(f"{GOLDEN_SCORES_FILE} of run {run_id} has an unknown layout: ignored")
        return None
    return document


def _recheck(session: ort.InferenceSession, golden: dict, name: str, version: str) -> tuple[float, int]:
    """max |artifact − source| over the golden rows, scored through the one scoring path."""
    expected = np.asarray(golden.get("scores", []), dtype=np.float64)
    try:
        feeds = runtime.InputPlan.of(session).feeds(golden.get("columns") or {})
        actual = runtime.score_feeds(session, feeds)
    except runtime.InvalidInputError as exc:
        raise ArtifactError(name, version, f"its golden rows ({GOLDEN_SCORES_FILE}) do not fit the artifact's "
                                           f"inputs: {exc}", "re-register the version with train_register, which "
                                                             "logs rows and artifact together") from exc
    if actual.shape != expected.shape or not expected.size:
        raise ArtifactError(name, version, f"{GOLDEN_SCORES_FILE} has {expected.size} scores for {actual.size} rows",
                            "re-register the version with train_register")
    return float(np.max(np.abs(actual - expected))), int(expected.size)


def _recorded(registry: Registry, run_id: str | None, name: str, version: str) -> float:
    value = None
    if run_id is not None:
        value = registry.client.get_run(run_id).data.metrics.get(PARITY_METRIC)
    if value is None:
        raise ArtifactError(name, version, f"there is no parity evidence: no {GOLDEN_SCORES_FILE} and no "
                                           f"{PARITY_METRIC} metric on its run ({run_id or 'none'})",
                            "register versions with the train_register DAG, which checks and logs parity")
    return float(value)


# ---- schemas -----------------------------------------------------------------------------------
def input_schema(model: ModelInputs) -> dict[str, str]:
    """{input name: ONNX type} of a session, artifact bytes or an already built mapping."""
    if isinstance(model, Mapping):
        return {str(k): str(v) for k, v in model.items()}
    session = model if isinstance(model, ort.InferenceSession) else runtime.load_session(model)
    return {i.name: i.type for i in session.get_inputs()}


def _output_problem(session: ort.InferenceSession) -> str | None:
    """Why the artifact does not give one score per row (None when it does)."""
    outputs = {o.name: o for o in session.get_outputs()}
    spec = outputs.get(runtime.PROBABILITIES)
    if spec is None:
        return (f"it has no {runtime.PROBABILITIES!r} output (outputs: {sorted(outputs)}), so it gives no score "
                "per row")
    shape = spec.shape
    if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != 2):
        return f"its {runtime.PROBABILITIES!r} output has shape {shape}, not [rows, 2]: not one score per row"
    return None


@dataclass(frozen=True)
class CompatibilityReport:
    """Whether a candidate can take the baseline's traffic and be judged on its logged rows."""

    compatible: bool
    reasons: list[str]  # each breaks compatibility, and says what to do
    warnings: list[str]
    database_revision: str | None
    head_revision: str
    missing_columns: list[str]
    added_features: list[str]
    dropped_features: list[str]
    changed_types: dict[str, list[str]]  # name -> [baseline type, candidate type]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def raise_for_incompatible(self) -> CompatibilityReport:
        if not self.compatible:
            raise IncompatibleSchemaError(self)
        return self


class IncompatibleSchemaError(FlightdeckError):
    """The candidate or the gateway database is not ready for the switch. Carries the report."""

    def __init__(self, report: CompatibilityReport) -> None:
        self.report = report
        super().__init__("pre-flight schema check failed: " + " | ".join(report.reasons))


def check_log_compatibility(engine: Engine, baseline_inputs: ModelInputs,
                            candidate_inputs: ModelInputs) -> CompatibilityReport:
    """Check the prediction log and the candidate's inputs before a blue-green switch.

    Compatible: the database is at the gateway schema head, `predictions` has every column
    the gateway writes, the candidate takes the baseline's inputs with the same types and
    gives one score per row (checked when the candidate is a session or bytes; given as a
    schema mapping, e.g. `ArtifactCheck.inputs`, its outputs were checked by `check_artifact`).
    A feature the candidate needs and the baseline does not take is
    incompatible (callers do not send it; logged rows cannot be replayed); a feature the
    candidate drops is only a warning. `raise_for_incompatible` turns the report into an
    IncompatibleSchemaError for a DAG task.
    """
    reasons: list[str] = []
    warnings: list[str] = []
    head = db.head_revision()
    where = f"gateway database {engine.url.render_as_string(hide_password=True)}"
    revision = None
    try:
        revision = db.current_revision(engine)
        db.check_schema(engine)
    except ConfigError as exc:
        reasons.append(str(exc))
    except sa.exc.SQLAlchemyError as exc:
        reasons.append(f"{where} cannot be read ({exc.__class__.__name__}: {exc}). Fix: start the database or "
                       "correct FLIGHTDECK_GATEWAY_DATABASE_URL")
    missing_columns: list[str] = []
    try:
        lacking = log_missing_columns(engine, PREDICTION_LOG_COLUMNS)
        if lacking:
            missing_columns = lacking
            reasons.append(f"{where}: table predictions lacks column(s) {missing_columns} that the gateway "
                           f"writes. Fix: {db.MIGRATE_FIX}")
        elif lacking is None and revision is not None:
            missing_columns = list(PREDICTION_LOG_COLUMNS)
            reasons.append(f"{where} has no predictions table. Fix: {db.MIGRATE_FIX}")
    except sa.exc.SQLAlchemyError:
        pass  # unreachable: already reported above

    candidate_session = None
    if not isinstance(candidate_inputs, Mapping):
        candidate_session = (candidate_inputs if isinstance(candidate_inputs, ort.InferenceSession)
                             else runtime.load_session(candidate_inputs))
    baseline = input_schema(baseline_inputs)
    candidate = input_schema(candidate_session if candidate_session is not None else candidate_inputs)
    added = [n for n in candidate if n not in baseline]
    dropped = [n for n in baseline if n not in candidate]
    changed = {n: [baseline[n], candidate[n]] for n in candidate if n in baseline and baseline[n] != candidate[n]}
    if added:
        reasons.append(f"the candidate needs feature(s) {added} that the baseline does not take: callers are not "
                       "sending them and logged rows cannot be replayed through it. Fix: retrain the candidate on "
                       "the baseline's features, or have callers send the new features first")
    if changed:
        listed = ", ".join(f"{n} {b} -> {c}" for n, (b, c) in changed.items())
        reasons.append(f"the candidate changes input type(s): {listed}; callers send the baseline's types. "
                       "Fix: keep each feature's type (retrain/export with the baseline's schema)")
    if dropped:
        warnings.append(f"the candidate no longer uses feature(s) {dropped}: callers may keep sending them "
                        "(they are ignored)")
    if candidate_session is not None:
        output = _output_problem(candidate_session)
        if output:
            reasons.append(f"the candidate: {output}. Fix: export it with flightdeck.training.export.to_onnx")
    return CompatibilityReport(compatible=not reasons, reasons=reasons, warnings=warnings,
                               database_revision=revision, head_revision=head, missing_columns=missing_columns,
                               added_features=added, dropped_features=dropped, changed_types=changed)
