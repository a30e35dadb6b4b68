"""Manifests, signatures, cohorts, the preprocessing spec and the gates, without TensorFlow."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flightdeck.edge.bundle import (
    build_manifest,
    check_file,
    encode_manifest,
    in_cohort,
    parse_manifest,
)
from flightdeck.edge.errors import BundleError, EdgeError, EdgeInputError, GateError
from flightdeck.edge.gates import ArtifactRow, apply_gates, check_gates, markdown_table
from flightdeck.edge.preprocess import PreprocessSpec
from flightdeck.edge.store import LocalStore, StoreError, open_store

DEVICES = [f"device-{i:05d}" for i in range(10_000)]


@pytest.mark.parametrize("percent", [1, 10, 25, 50, 90])
def test_cohort_share_holds_over_10000_devices(percent):
    n, p = len(DEVICES), percent / 100
    count = sum(in_cohort(d, "7-tflite_int8", percent) for d in DEVICES)
    assert abs(count - n * p) <= 4 * math.sqrt(n * p * (1 - p)), count  # binomial, 4 sigma


def test_cohort_only_grows_for_a_bundle_and_is_redrawn_for_the_next():
    at10 = {d for d in DEVICES if in_cohort(d, "7-tflite_int8", 10)}
    at50 = {d for d in DEVICES if in_cohort(d, "7-tflite_int8", 50)}
    assert at10 <= at50
    other = {d for d in DEVICES if in_cohort(d, "8-tflite_int8", 10)}
    overlap = len(at10 & other)
    assert abs(overlap - 100) <= 4 * math.sqrt(100), overlap  # independent: ~ n * 0.1 * 0.1
    assert all(in_cohort(d, "x", 100) for d in DEVICES[:100]) and not any(in_cohort(d, "x", 0) for d in DEVICES[:100])


def _manifest(**overrides):
    files = {"model.onnx": b"model-bytes", "golden.json": b"{}"}
    values = dict(model_name="m", model_version="3", fmt="onnx_float", files=files, rollout_percent=10,
                  min_agent_version="1.0.0", self_test_tolerance=1e-5)
    return build_manifest(**{**values, **overrides}), files


def test_signed_manifest_verifies_and_any_change_is_rejected(tmp_path):
    from flightdeck.edge.keys import generate_keypair, load_private_key, load_public_key

    private_path, public_path = generate_keypair(tmp_path)
    assert oct(private_path.stat().st_mode & 0o777) == "0o600"
    key, public = load_private_key(private_path), load_public_key(public_path)
    manifest, files = _manifest()
    body = encode_manifest(manifest)
    assert parse_manifest(body, key.sign(body), public, "b")["bundle_id"] == "3-onnx_float"
    with pytest.raises(BundleError, match="signature"):
        parse_manifest(body.replace(b'"rollout_percent": 10.0', b'"rollout_percent": 99.0'), key.sign(body), public, "b")
    check_file(manifest, "model.onnx", files["model.onnx"])
    with pytest.raises(BundleError, match="truncated"):
        check_file(manifest, "model.onnx", files["model.onnx"][:4])
    with pytest.raises(BundleError, match="sha256"):
        check_file(manifest, "model.onnx", b"x" * len(files["model.onnx"]))
    with pytest.raises(EdgeError, match="already exists"):
        generate_keypair(tmp_path)


@pytest.mark.parametrize("overrides, named", [
    ({"fmt": "gguf"}, "format"), ({"rollout_percent": 120}, "rollout_percent"),
    ({"min_agent_version": "one"}, "dotted integers"), ({"model_name": "../x"}, "model name"),
])
def test_bad_manifest_inputs_are_named(overrides, named):
    with pytest.raises(EdgeError, match=named):
        _manifest(**overrides)


def test_local_store_refuses_escaping_keys_and_names_missing_ones(tmp_path):
    store = open_store(tmp_path)
    assert isinstance(store, LocalStore)
    store.put("a/b.json", b"1")
    assert store.get("a/b.json") == b"1"
    with pytest.raises(StoreError, match="publish a bundle"):
        store.get("a/none.json")
    with pytest.raises(StoreError, match="leaves the store root"):
        store.put("../outside", b"1")
    with pytest.raises(StoreError, match="neither a folder"):
        open_store("ftp://host/x")


def test_preprocessing_spec_scales_one_hots_and_round_trips():
    columns = {"a": [1.0, 2.0, 3.0], "c": ["x", "y", "x"]}
    spec = PreprocessSpec.fit(columns, ["a"], ["c"])
    x = PreprocessSpec.from_json(spec.to_json()).transform({"a": [2.0, 3.0], "c": ["y", "unseen"]})
    assert x.dtype == np.float32 and x.shape == (2, spec.width) == (2, 3)
    np.testing.assert_allclose(x, [[0.0, 0.0, 1.0], [1 / np.std([1, 2, 3]), 0.0, 0.0]], rtol=1e-6)
    with pytest.raises(EdgeInputError, match=r"missing column\(s\) \['c'\]"):
        spec.transform({"a": [1.0]})
    with pytest.raises(EdgeInputError, match="finite"):
        spec.transform({"a": [float("nan")], "c": ["x"]})


def test_gates_pass_and_fail_naming_the_artifact_and_the_miss():
    rows = [ArtifactRow("onnx_float", "onnxruntime", "float", float_source="scikit-learn", max_abs_diff=2e-7, auc=0.80),
            ArtifactRow("tflite_float32", "litert", "float", float_source="keras_student", max_abs_diff=3e-5,
                        auc=0.799, distilled=True),
            ArtifactRow("tflite_int8", "litert", "quantised", auc=0.79),
            ArtifactRow("onnx_int8", "onnxruntime", "not_applicable", note="nothing to quantise")]
    misses = apply_gates(rows, champion_auc=0.80)
    assert [r.verdict for r in rows] == ["pass", "fail", "fail", "n/a"]
    assert misses[0].startswith("tflite_float32: max |Δp| vs keras_student = 3e-05 exceeds 1e-05")
    assert misses[1].startswith("tflite_int8: AUC 0.7900 loses 1.250% of the champion's 0.8000, 0.750% over")
    with pytest.raises(GateError, match="tflite_int8"):
        check_gates(rows, 0.80)
    assert "| tflite_int8 | litert | quantised |" in markdown_table(rows, 0.80)
