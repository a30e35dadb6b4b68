import numpy as np
import pytest

from flightdeck import runtime
from flightdeck.data.schema import CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES
from flightdeck.errors import ParityError
from flightdeck.training.export import check_parity, to_onnx
from flightdeck.training.train import MODEL_TYPES, fit_pipeline


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_onnx_export_matches_sklearn_within_1e5(raw_frame, model_type):
    pipeline = fit_pipeline(raw_frame, model_type, seed=0)
    model = to_onnx(pipeline, "test-model")
    report = check_parity(pipeline, model, raw_frame, tolerance=1e-5, rows=1000)
    assert report.rows == 1000 and report.passed
    assert report.max_abs_diff <= 1e-5


def test_artifact_takes_one_input_per_raw_feature(raw_frame):
    session = runtime.load_session(to_onnx(fit_pipeline(raw_frame, "logistic_regression", 0), "m").SerializeToString())
    assert runtime.input_columns(session) == list(FEATURES)
    types = {i.name: i.type for i in session.get_inputs()}
    assert {types[c] for c in NUMERIC_FEATURES} == {"tensor(double)"}
    assert {types[c] for c in CATEGORICAL_FEATURES} == {"tensor(string)"}


def test_parity_failure_names_the_gap(raw_frame):
    pipeline = fit_pipeline(raw_frame, "logistic_regression", seed=0)
    other = to_onnx(fit_pipeline(raw_frame.sample(frac=0.5, random_state=1), "logistic_regression", 0), "m")
    with pytest.raises(ParityError, match="exceeds tolerance"):
        check_parity(pipeline, other, raw_frame, tolerance=1e-5, rows=200)


def test_scoring_rejects_missing_and_non_numeric_columns(raw_frame):
    session = runtime.load_session(to_onnx(fit_pipeline(raw_frame, "logistic_regression", 0), "m").SerializeToString())
    with pytest.raises(runtime.InvalidInputError, match="missing column"):
        runtime.score(session, raw_frame.drop(columns=["age"]).head(3))
    bad = raw_frame.head(3).astype({"age": object})
    bad.loc[bad.index[0], "age"] = "forty"
    with pytest.raises(runtime.InvalidInputError, match="'age' must be numeric"):
        runtime.score(session, bad)
    assert runtime.score(session, raw_frame.head(0)).shape == (0,)
    scores = runtime.score(session, raw_frame.head(10))
    assert scores.dtype == np.float64 and ((scores > 0) & (scores < 1)).all()
