"""Per-feature drift in the stream scorer's windows: PSI of every feature against the model version's
training reference profile, on batch monitoring's buckets, named in the alert."""

from __future__ import annotations

import json
from functools import cache

import pandas as pd
import pytest

from flightdeck.batch.monitoring import build_reference_profile, drift_report
from flightdeck.data.generator import generate_partition
from flightdeck.data.schema import FEATURES
from flightdeck.errors import ConfigError
from flightdeck.streaming.broker import Backend, Checkpoint, CommitBatch
from flightdeck.streaming.drift import investigate, parse_alert, summary
from flightdeck.streaming.events import Record
from flightdeck.streaming.feature_drift import FeatureReference, drift_alert
from flightdeck.streaming.models import ModelRouter, StaticModel
from flightdeck.streaming.scorer import ScorerConfig, StreamScorer
from flightdeck.streaming.windows import Windows
from tests.support.models import onnx_model

T0 = 1_699_999_980  # a minute boundary
RUN_ID = "run-of-version-3"


@cache
def _training() -> pd.DataFrame:
    """The rows `onnx_model(1)` was trained on (tests.support.models)."""
    return generate_partition("2026-01-15", rows=2000, seed=1)


@cache
def _profile() -> dict:
    """The reference profile train_register would log with that model's version."""
    return json.loads(json.dumps(build_reference_profile(_training()[list(FEATURES)], None)))


def _rows(n: int = 1201) -> list[dict]:
    return generate_partition("2026-02-01", rows=n + 300, seed=3)[list(FEATURES)].dropna().head(n).to_dict("records")


class _Registry:
    """What the scorer asks of the MLflow registry: a version (with its run), its ONNX file, and a run's JSON
    artifact, here the reference profile logged on the version's training run."""

    def get_version(self, name, ref):
        return type("V", (), {"version": "3", "run_id": RUN_ID})()

    def download_onnx(self, name, ref):
        return "3", onnx_model(1)

    def load_json(self, run_id, artifact_file):
        assert (run_id, artifact_file) == (RUN_ID, "reference_profile.json")
        return _profile()


class _Memory:
    """A source of records and a sink that keeps every committed batch (both in memory)."""

    def __init__(self, records: list[Record]) -> None:
        self.records, self.read, self.batches = records, 0, []

    def seek(self, position, processed=0):
        pass

    def poll(self, max_records, timeout_s):
        out = self.records[self.read:self.read + max_records]
        self.read += len(out)
        return out

    def lag(self):
        return len(self.records) - self.read

    def load(self):
        return Checkpoint()

    def entities(self, ids):
        return {}

    def commit(self, batch: CommitBatch):
        self.batches.append(batch)

    def close(self):
        pass


def _events(rows: list[dict], change) -> list[Record]:
    """600 events in [T0, T0 + 60) as they come, 600 in [T0 + 60, T0 + 120) passed through `change`,
    and one at T0 + 200 that closes the second window."""
    records = []
    for i, row in enumerate(rows):
        row = dict(row)
        t = T0 + 200 if i == 1200 else T0 + (i * 0.1 if i < 600 else 60 + (i - 600) * 0.1)
        if 600 <= i < 1200:
            change(row)
        records.append(Record(f"{i}-0", json.dumps({"customer_id": f"c{i}", "event_time": t, **row}).encode(), t))
    return records


def _score(records: list[Record], registry=None) -> tuple[list[dict], list[dict]]:
    """Closed window records and alerts of the scorer over `records` (tumbling 60 s windows)."""
    memory = _Memory(records)
    scorer = StreamScorer(Backend(memory, memory), ModelRouter(registry or _Registry(), "m"),
                          [Windows("tumbling", 60)], ScorerConfig(batch_size=250, drift_alert_psi=0.2))
    scorer.run(idle_stop_s=0)
    windows = {r["start"]: r for b in memory.batches for r in b.window_records}
    return [windows[k] for k in sorted(windows)], [a for b in memory.batches for a in b.alerts]


def test_a_variance_change_that_moves_neither_the_score_nor_the_means_is_named_by_its_feature_psi():
    mean_age = float(_training()["age"].mean())

    def narrower_ages(row):  # the same centre, half the spread
        row["age"] = mean_age + 0.5 * (row["age"] - mean_age)

    (before, after), alerts = _score(_events(_rows(), narrower_ages))
    # What the scorer checked until now misses it: the score's PSI stays low and age's mean barely moves.
    assert after["score_psi"] < 0.1 and before["score_psi"] == 0.0
    assert abs(after["feature_means"]["age"] - before["feature_means"]["age"]) < 0.02 * mean_age
    # The per-feature check alerts once, naming age and only age.
    assert [a.get("drifted_features") for a in alerts] == [["age"]]
    (alert,) = alerts
    assert alert["alert"] == "feature_drift" and after["feature_psi"]["age"] > 0.5
    assert set(after["feature_psi"]) == set(FEATURES) and set(before["feature_psi"]) == set(FEATURES)
    assert max(before["feature_psi"].values()) < 0.2  # the unchanged window stays quiet
    assert alert["start"] == T0 + 60 and alert["feature_psi"] == after["feature_psi"]


def test_the_window_psi_of_each_feature_is_batch_monitorings_psi_of_the_same_rows():
    rows = _rows()

    def swap_housing(row):  # a common and a rare category trade places
        row["housing"] = {"rent": "other", "other": "rent"}.get(row["housing"], row["housing"])

    records = _events(rows, swap_housing)
    (_, after), (alert,) = _score(records)
    window = pd.DataFrame([json.loads(r.value) for r in records[600:1200]])[list(FEATURES)]
    batch = drift_report(_profile(), window, None, threshold=0.2)
    assert after["feature_psi"] == pytest.approx(batch.feature_psi, abs=1e-6)
    assert alert["drifted_features"] == batch.drifted_features == ["housing"]


def test_window_state_keeps_the_feature_counts_across_a_restart():
    reference = FeatureReference(_profile())
    rows = _rows(400)
    buckets = reference.bucket_rows(rows)

    def windows() -> Windows:
        w = Windows("tumbling", 60)
        w.feature_references["3"] = reference
        return w

    whole, resumed = windows(), windows()
    for i, row in enumerate(rows):
        whole.add(T0 + i * 0.1, "3", 0.5, row, buckets=buckets[i])
        if i < 250:
            resumed.add(T0 + i * 0.1, "3", 0.5, row, buckets=buckets[i])
    restarted = windows()
    restarted.restore(json.loads(json.dumps(resumed.state())))  # as stored with the checkpoint
    for i in range(250, len(rows)):
        restarted.add(T0 + i * 0.1, "3", 0.5, rows[i], buckets=buckets[i])
    for w in (whole, restarted):
        w.add(T0 + 200, "3", 0.5, rows[0])  # closes [T0, T0 + 60)
    (expected,), (got,) = whole.close_ready(), restarted.close_ready()
    assert got["feature_psi"] == expected["feature_psi"] and got["count"] == 400


def test_a_state_written_before_feature_counts_existed_still_restores():
    w = Windows("tumbling", 60, drift_features=("age",))
    w.restore({"max_event_time": T0 + 5.0, "late_total": 0, "references": {},
               "open": [[T0, "3", 1, 0.5, 0.25, [0] * 5 + [1] + [0] * 4, {"age": 40.0}]], "closed": []})
    w.add(T0 + 100, "3", 0.5, {"age": 40.0})
    (record,) = w.close_ready()
    assert record["count"] == 1 and record["feature_psi"] is None


def test_a_version_without_a_reference_profile_alerts_on_the_score_only(caplog):
    class NoProfile(_Registry):
        def load_json(self, run_id, artifact_file):
            from flightdeck.errors import FlightdeckError

            raise FlightdeckError(f"run {run_id} has no {artifact_file}.")

    (_, after), alerts = _score(_events(_rows(), lambda row: row.update(housing="other")), NoProfile())
    assert after["feature_psi"] is None and alerts == []
    assert "no per-feature drift" in caplog.text


def test_a_malformed_reference_profile_is_refused_naming_the_problem():
    broken = json.loads(json.dumps(_profile()))
    del broken["features"]["age"]
    with pytest.raises(ConfigError, match="lacks features age"):
        StaticModel(onnx_model(1), "1", profile=broken)
    broken = json.loads(json.dumps(_profile()))
    broken["features"]["housing"]["proportions"].pop()
    with pytest.raises(ConfigError, match="'housing' is malformed"):
        FeatureReference(broken)
    with pytest.raises(ConfigError, match="format version"):
        FeatureReference({**_profile(), "version": 99})


def test_the_investigation_reads_feature_drift_alerts_and_alerts_from_before_it_existed():
    record = {"kind": "tumbling", "start": 60.0, "end": 120.0, "model_version": "3", "count": 10,
              "score_mean": 0.4, "score_std": 0.1, "score_bins": [1] * 10, "score_psi": 0.03,
              "feature_means": {"age": 40.0}, "late_events": 0}
    new = {"alert": "feature_drift", **record, "feature_psi": {"housing": 1.7, "age": 0.01},
           "drifted_features": ["housing"]}
    alert = parse_alert({"stream": "s", "id": "5-0", "data": {"data": json.dumps(new)}})
    assert alert.alert == "feature_drift" and alert.drifted_features == ("housing",)
    report = investigate(alert, [], None)
    assert report["drifted_features"] == [{"feature": "housing", "psi": 1.7}]
    assert "housing (PSI 1.700)" in summary(report)
    old = parse_alert({"stream": "s", "id": "6-0", "data": {"data": json.dumps({"alert": "score_drift", **record})}})
    assert old.feature_psi is None and old.drifted_features == ()
    assert investigate(old, [], None)["drifted_features"] == []


def test_the_reference_profile_option_goes_with_model_file_and_must_be_a_profile(tmp_path):
    from flightdeck.streaming.service import StreamOptions, model_router

    model, good, bad = tmp_path / "model.onnx", tmp_path / "profile.json", tmp_path / "bad.json"
    model.write_bytes(onnx_model(1))
    good.write_text(json.dumps(_profile()))
    bad.write_text("{not json")
    router = model_router(StreamOptions(model_file=model, reference_profile=good))
    router.refresh(force=True)
    (variant,) = router.versions()
    assert router.model(variant).reference is not None
    with pytest.raises(ConfigError, match="--reference-profile.*cannot read"):
        model_router(StreamOptions(model_file=model, reference_profile=bad))
    with pytest.raises(ConfigError, match="without --model-file"):
        model_router(StreamOptions(reference_profile=good))


def test_window_feature_psi_is_each_features_psi_rounded_to_six_decimals():
    import numpy as np

    from flightdeck.stats import psi

    reference = FeatureReference(_profile())
    counts = np.random.default_rng(3).integers(0, 40, size=(25, reference.size))
    got = reference.feature_psi_many(counts)
    for row, window in zip(counts, got, strict=True):
        for k, name in enumerate(reference.names):
            share = reference._expected[k][:reference.sizes[k]]
            part = row[reference.offsets[k]:reference.offsets[k] + reference.sizes[k]]
            assert window[name] == round(float(psi(share, part)), 6), name


def test_a_drift_alert_names_the_features_over_the_threshold_largest_first_and_ties_by_name():
    record = {"score_psi": 0.01, "feature_psi": {"b": 0.5, "a": 0.5, "c": 0.9, "d": 0.1, "e": float("nan")}}
    assert drift_alert(record, 0.2)["drifted_features"] == ["c", "a", "b"]
    assert drift_alert(record, 0.2)["alert"] == "feature_drift"
    assert drift_alert(record, 0.95) is None and drift_alert({**record, "score_psi": 0.96}, 0.95) == {
        "alert": "score_drift", **record, "score_psi": 0.96, "drifted_features": []}
    assert drift_alert({"score_psi": None, "feature_psi": None}, 0.2) is None
