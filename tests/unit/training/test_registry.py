"""The MLflow wrapper against a real MLflow store (sqlite + local artifacts) in a temp folder."""

import mlflow
import numpy as np
import pytest

from flightdeck import runtime
from flightdeck.data.schema import FEATURES
from flightdeck.errors import ConfigError, ModelNotFoundError
from flightdeck.registry import CHALLENGER, CHAMPION, Registry
from flightdeck.training.export import to_onnx
from flightdeck.training.train import fit_pipeline

NAME = "registry-test-model"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    return Registry(f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri(), "registry-tests")


@pytest.fixture(scope="module")
def logged(registry, raw_frame):
    """One run with an ONNX model attached: (run_id, model_uri, model bytes)."""
    model = to_onnx(fit_pipeline(raw_frame, "logistic_regression", 0), NAME)
    run_id = registry.log_run("key-1", {"model_type": "logistic_regression"}, {"holdout_roc_auc": 0.8},
                              {"flightdeck.window": "w"}, run_name="first")
    example = raw_frame[list(FEATURES)].head(3)
    scores = runtime.score(runtime.load_session(model.SerializeToString()), example)
    return run_id, registry.log_onnx_model(run_id, model, example, scores), model.SerializeToString()


def test_training_run_is_logged_once_per_key(registry, logged):
    run_id, _, _ = logged
    again = registry.log_run("key-1", {"model_type": "logistic_regression"}, {}, {}, run_name="again")
    assert again == run_id
    run = registry.client.get_run(run_id)
    assert run.data.params["model_type"] == "logistic_regression"
    assert run.data.metrics["holdout_roc_auc"] == 0.8


def test_logged_model_carries_signature_and_input_example(registry, logged):
    run_id, model_uri, _ = logged
    info = mlflow.models.get_model_info(model_uri)
    assert [c.name for c in info.signature.inputs] == list(FEATURES)
    assert info.saved_input_example_info is not None
    assert "onnx" in info.flavors
    assert registry.log_onnx_model(run_id, None, None, None) == model_uri  # attached once


def test_pyfunc_scores_a_dataframe_as_the_runtime_does(logged, raw_frame):
    """The signature is the artifact's: one named [n, 1] tensor per feature (a column signature made
    pyfunc hand ONNX Runtime 1-D columns and pandas string arrays, which it refused)."""
    _, model_uri, model_bytes = logged
    info = mlflow.models.get_model_info(model_uri)
    assert {(spec.name, spec.shape) for spec in info.signature.inputs} == {(name, (-1, 1)) for name in FEATURES}
    # MLflow's schema enforcement reads each column's first value as `series[0]`: a default index.
    rows = raw_frame[list(FEATURES)].dropna().sample(200, random_state=3).reset_index(drop=True)
    predicted = mlflow.pyfunc.load_model(model_uri).predict(rows)[runtime.PROBABILITIES][:, 1]
    np.testing.assert_array_equal(predicted, runtime.score(runtime.load_session(model_bytes), rows))


def test_first_registration_sets_champion_and_challenger(registry, logged):
    run_id, model_uri, model_bytes = logged
    first = registry.register(NAME, model_uri, run_id, "key-1")
    assert first.created and first.version == "1"
    assert registry.aliases(NAME) == {CHAMPION: "1", CHALLENGER: "1"}
    assert registry.download_onnx(NAME, CHAMPION) == ("1", model_bytes)
    assert registry.download_onnx(NAME, "1")[0] == "1"


def test_same_training_key_registers_nothing_new(registry, logged):
    run_id, model_uri, _ = logged
    again = registry.register(NAME, model_uri, run_id, "key-1")
    assert not again.created and again.version == "1"
    assert len(registry.client.search_model_versions(f"name = '{NAME}'")) == 1


def test_later_version_becomes_challenger_only(registry, logged):
    run_id, model_uri, _ = logged
    second = registry.register(NAME, model_uri, run_id, "key-2")
    assert second.created and second.aliases == (CHALLENGER,)
    assert registry.aliases(NAME) == {CHAMPION: "1", CHALLENGER: "2"}


def test_unknown_model_alias_or_version_is_a_clear_error(registry):
    assert registry.alias_version("no-such-model", CHAMPION) is None
    assert registry.aliases("no-such-model") == {}
    with pytest.raises(ModelNotFoundError, match="alias 'previous'"):
        registry.download_onnx(NAME, "previous")
    with pytest.raises(ModelNotFoundError, match="version 99"):
        registry.download_onnx(NAME, "99")


def test_resolve_pins_a_number_or_an_alias_to_a_version(registry, logged):
    run_id, _, _ = logged
    champion = registry.resolve(NAME, CHAMPION)
    assert (champion.version, champion.ref, champion.run_id) == ("1", CHAMPION, run_id)
    assert registry.resolve(NAME, CHALLENGER).version == "2"
    assert registry.resolve(NAME, "2").to_dict() == {"name": NAME, "version": "2", "ref": "2", "run_id": run_id}
    with pytest.raises(ModelNotFoundError, match="version 99"):
        registry.resolve(NAME, "99")


@pytest.mark.parametrize("ref", ["", "v1; drop", "-1", "latest version"])
def test_resolve_refuses_what_is_neither_a_number_nor_an_alias(registry, ref):
    with pytest.raises(ConfigError, match="model_ref"):
        registry.resolve(NAME, ref)
