"""Pre-flight checks: artifact + parity against a real MLflow registry in a temp folder, and
prediction-log compatibility against a real (sqlite) gateway database."""

from __future__ import annotations

import json
from dataclasses import dataclass

import onnx
import pytest
from alembic import command
from alembic.config import Config
from onnx import TensorProto, helper

from flightdeck import runtime
from flightdeck.config import Settings
from flightdeck.data.generator import generate_partition
from flightdeck.delivery.preflight import (
    PREDICTION_LOG_COLUMNS,
    ArtifactError,
    IncompatibleSchemaError,
    check_artifact,
    check_log_compatibility,
    input_schema,
)
from flightdeck.errors import ConfigError, ModelNotFoundError, ParityError
from flightdeck.golden import GOLDEN_SCORES_FILE, PARITY_METRIC, golden_scores_document
from flightdeck.registry import Registry
from flightdeck.serving import db
from flightdeck.training.export import to_onnx
from flightdeck.training.train import fit_pipeline
from tests.support.models import FEATURES, onnx_model

NAME = "preflight-model"
SETTINGS = Settings(parity_tolerance=1e-5)


# ---- check_artifact ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """Versions: 1 with the recorded parity metric only, 2 with golden scores, 3 with golden
    scores the artifact does not reproduce, 4 with no parity evidence at all."""
    root = tmp_path_factory.mktemp("mlflow")
    registry = Registry(f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri(), "preflight-tests")
    pipeline = fit_pipeline(generate_partition("2026-01-15", rows=1000, seed=4), "logistic_regression", seed=4)
    model = to_onnx(pipeline, NAME)
    rows = generate_partition("2026-02-01", rows=60, seed=9)[FEATURES].dropna().head(20).reset_index(drop=True)
    source_scores = pipeline.predict_proba(rows)[:, 1]
    uri = None
    for version in ("1", "2", "3", "4"):
        run_id = registry.log_run(f"key-{version}", {}, {}, {}, run_name=f"v{version}")
        # One logged artifact, registered four times from four runs: logging a model costs
        # seconds, and the evidence under test lives on the runs.
        uri = uri or registry.log_onnx_model(run_id, model, rows.head(3), source_scores[:3])
        if version == "1":
            registry.client.log_metric(run_id, PARITY_METRIC, 2e-7)
        if version == "2":
            registry.client.log_metric(run_id, PARITY_METRIC, 2e-7)
            registry.log_json(run_id, golden_scores_document(rows, source_scores), GOLDEN_SCORES_FILE)
        if version == "3":
            registry.log_json(run_id, golden_scores_document(rows, source_scores + 1e-3), GOLDEN_SCORES_FILE)
        assert registry.register(NAME, uri, run_id, f"key-{version}").version == version
    return registry


def test_recorded_metric_is_the_fallback_evidence(registry):
    check = check_artifact(registry, NAME, "champion", SETTINGS)
    assert check.version == "1" and check.ref == "champion"
    assert check.parity_evidence == "recorded_metric"
    assert check.parity_max_abs_diff == 2e-7 and check.parity_rows is None
    assert list(check.inputs) == FEATURES and check.size_bytes > 0 and len(check.sha256) == 64
    assert any("not re-checked" in note for note in check.notes)
    assert json.loads(json.dumps(check.to_dict()))["version"] == "1"
    with pytest.raises(ParityError, match="recorded metric"):
        check_artifact(registry, NAME, "1", Settings(parity_tolerance=1e-9))


def test_golden_scores_are_rescored_through_the_downloaded_artifact(registry):
    check = check_artifact(registry, NAME, "2", SETTINGS)
    assert check.parity_evidence == "golden_scores" and check.parity_rows == 20
    assert check.parity_max_abs_diff <= 1e-5


def test_golden_scores_the_artifact_does_not_reproduce_fail(registry):
    with pytest.raises(ParityError, match=r"version 3 \(golden scores\).*exceeds tolerance") as caught:
        check_artifact(registry, NAME, "3", SETTINGS)
    assert caught.value.max_abs_diff == pytest.approx(1e-3, rel=1e-6)


def test_no_parity_evidence_is_a_typed_error(registry):
    with pytest.raises(ArtifactError, match=f"no parity evidence.*{PARITY_METRIC}.*train_register"):
        check_artifact(registry, NAME, "4", SETTINGS)


def test_unknown_ref_names_the_model_and_the_aliases_that_exist(registry):
    with pytest.raises(ModelNotFoundError, match=r"has no alias 'previous'.*challenger -> version 4, "
                                                 r"champion -> version 1") as caught:
        check_artifact(registry, NAME, "previous", SETTINGS)
    assert caught.value.model == NAME
    with pytest.raises(ModelNotFoundError, match="has no version 99"):
        check_artifact(registry, NAME, "99", SETTINGS)
    with pytest.raises(ModelNotFoundError, match="aliases: none"):
        check_artifact(registry, "no-such-model", "champion", SETTINGS)


@dataclass
class _Version:
    version: str
    run_id: str | None = None


class _BrokenArtifactRegistry:
    def get_version(self, name, ref):
        return _Version("7")

    def download_onnx(self, name, ref):
        return "7", b"this is not an ONNX model"


def test_artifact_that_onnx_runtime_cannot_load_is_a_typed_error():
    with pytest.raises(ArtifactError, match="version 7: ONNX Runtime cannot load"):
        check_artifact(_BrokenArtifactRegistry(), NAME, "7", SETTINGS)


def test_golden_document_refuses_incomplete_rows():
    rows = generate_partition("2026-02-01", rows=10, seed=9)[FEATURES]
    rows.loc[0, "age"] = float("nan")
    with pytest.raises(ConfigError, match="non-finite"):
        golden_scores_document(rows, [0.5] * len(rows))


# ---- check_log_compatibility ---------------------------------------------------------------------
@pytest.fixture
def gateway_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    yield url
    db.dispose_engine(url)


@pytest.fixture
def engine(gateway_url):
    db.upgrade(gateway_url)
    return db.engine_for(gateway_url)


def test_same_inputs_are_compatible(engine):
    report = check_log_compatibility(engine, onnx_model(1), runtime.load_session(onnx_model(2)))
    assert report.compatible and report.reasons == [] and report.warnings == []
    assert report.database_revision == report.head_revision
    assert report.raise_for_incompatible() is report
    assert json.loads(json.dumps(report.to_dict()))["compatible"] is True


def test_candidate_needing_a_feature_the_baseline_does_not_take_is_incompatible(engine):
    baseline = {k: v for k, v in input_schema(onnx_model(1)).items() if k != "age"}
    report = check_log_compatibility(engine, baseline, onnx_model(2))
    assert not report.compatible and report.added_features == ["age"]
    with pytest.raises(IncompatibleSchemaError, match=r"needs feature\(s\) \['age'\].*cannot be replayed"):
        report.raise_for_incompatible()


def test_candidate_dropping_a_feature_is_compatible_with_a_warning(engine):
    baseline = {**input_schema(onnx_model(1)), "favourite_colour": "tensor(string)"}
    report = check_log_compatibility(engine, baseline, onnx_model(2))
    assert report.compatible and report.dropped_features == ["favourite_colour"]
    assert "no longer uses feature(s) ['favourite_colour']" in report.warnings[0]


def test_changed_input_type_is_incompatible(engine):
    baseline = {**input_schema(onnx_model(1)), "age": "tensor(string)"}
    report = check_log_compatibility(engine, baseline, onnx_model(2))
    assert not report.compatible and report.changed_types == {"age": ["tensor(string)", "tensor(double)"]}


def test_candidate_without_one_score_per_row_is_incompatible(engine):
    age = helper.make_tensor_value_info("age", TensorProto.DOUBLE, [None, 1])
    out = helper.make_tensor_value_info("score", TensorProto.DOUBLE, [None, 1])
    graph = helper.make_graph([helper.make_node("Identity", ["age"], ["score"])], "g", [age], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    report = check_log_compatibility(engine, {"age": "tensor(double)"}, model.SerializeToString())
    assert not report.compatible
    assert "no 'probabilities' output" in report.reasons[0]
    assert onnx.checker.check_model(model) is None


def test_stale_database_revision_is_incompatible(gateway_url):
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", gateway_url)
    command.upgrade(config, "0001")
    report = check_log_compatibility(db.engine_for(gateway_url), onnx_model(1), onnx_model(1))
    assert not report.compatible and report.database_revision == "0001"
    assert "not head" in report.reasons[0] and "gateway-migrate" in report.reasons[0]
    # 0001 predates the logged features (and any column a later migration adds): all are named.
    assert "features" in report.missing_columns
    assert set(report.missing_columns) <= set(PREDICTION_LOG_COLUMNS) - {"request_id", "score", "created_at"}
    with pytest.raises(IncompatibleSchemaError, match="lacks column"):
        report.raise_for_incompatible()


def test_never_migrated_database_is_incompatible(gateway_url):
    report = check_log_compatibility(db.engine_for(gateway_url), onnx_model(1), onnx_model(1))
    assert not report.compatible and report.database_revision is None
    assert "never migrated" in report.reasons[0]
