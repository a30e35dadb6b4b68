"""Offline backtest over a real (sqlite) prediction log, with real ONNX models."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import cache

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from flightdeck import runtime
from flightdeck.data.generator import generate_partition
from flightdeck.data.schema import LABEL
from flightdeck.delivery.backtest import (
    BacktestFailedError,
    BacktestSettings,
    backtest,
    backtest_versions,
    load_replay,
)
from flightdeck.serving import db
from flightdeck.serving.predlog import Outcome, OutcomeStore, PredictionLogWriter, PredictionRecord
from flightdeck.training.export import to_onnx
from flightdeck.training.train import fit_pipeline
from tests.support.models import FEATURES, MODEL, FakeRegistry, onnx_model

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
ROWS = 400


@pytest.fixture
def engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    db.upgrade(url)
    yield db.engine_for(url)
    db.dispose_engine(url)


@cache
def traffic() -> pd.DataFrame:
    """Complete rows with labels, as live traffic and its later outcomes."""
    frame = generate_partition("2026-03-01", rows=2 * ROWS, seed=5)
    return frame.dropna(subset=[*FEATURES, LABEL]).head(ROWS).reset_index(drop=True)


@cache
def inverted_model() -> bytes:
    """A clearly worse challenger: trained on flipped labels, so it ranks backwards."""
    train = generate_partition("2026-01-15", rows=2000, seed=3)
    train[LABEL] = 1 - train[LABEL]
    return to_onnx(fit_pipeline(train, "logistic_regression", seed=3), MODEL).SerializeToString()


def champion_scores(frame: pd.DataFrame) -> np.ndarray:
    session = runtime.load_session(onnx_model(1))
    return runtime.score_feeds(session, runtime.feeds_from_columns(session, frame[FEATURES].to_dict("list")))


def log_traffic(engine, frame: pd.DataFrame, scores, *, version: str = "1", labelled: int | None = None,
                endpoint: str = "default", features: list[str | None] | None = None, prefix: str = "r") -> None:
    """Log `frame` as live rows served by `version`; outcomes for the first `labelled` rows,
    alternately keyed by request_id and by unit_id."""
    texts = features or [json.dumps(row, sort_keys=True) for row in frame[FEATURES].to_dict("records")]
    records = [PredictionRecord(f"{prefix}{i}", 0, f"u-{prefix}{i}", endpoint, "blue", version, 1, "live",
                                f"h{i}", float(score), 1.0, False, T0 + timedelta(seconds=i), text)
               for i, (score, text) in enumerate(zip(scores, texts, strict=True))]
    writer = PredictionLogWriter(engine)
    writer.submit(records)
    writer.close()
    assert writer.written == len(records)
    labels = frame[LABEL].to_numpy()
    n = len(frame) if labelled is None else labelled
    OutcomeStore(engine).record([
        Outcome(f"{prefix}{i}", None, float(labels[i])) if i % 2 == 0 else Outcome(None, f"u-{prefix}{i}", float(labels[i]))
        for i in range(n)])


def run(engine, challenger: bytes, settings: BacktestSettings | None = None, version: str | None = "1"):
    replay = load_replay(engine, "default", since=T0 - timedelta(days=1), limit=10_000)
    return backtest(onnx_model(1), challenger, replay, settings or BacktestSettings(decision_threshold=0.5),
                    champion_version=version)


def test_load_replay_reads_recent_live_rows_with_features_and_labels(engine):
    frame = traffic().head(6)
    log_traffic(engine, frame, champion_scores(frame), labelled=4)
    shadow = PredictionRecord("r0", 0, "u-r0", "default", "green", "2", 1, "shadow", "h0", 0.5, 1.0, False, T0, None)
    other = PredictionRecord("x", 0, None, "other", "blue", "1", 1, "live", "h", 0.5, 1.0, False, T0, "{}")
    writer = PredictionLogWriter(engine)
    writer.submit([shadow, other])
    writer.close()

    replay = load_replay(engine, "default")
    assert list(replay["request_id"]) == [f"r{i}" for i in range(6)]  # live rows of the endpoint, oldest first
    assert replay["features"][0] == frame[FEATURES].iloc[0].to_dict()
    assert replay["features_error"].isna().all()
    expected = [*frame[LABEL].head(4).astype(float), np.nan, np.nan]  # by request_id and by unit_id
    np.testing.assert_array_equal(replay["label"].to_numpy(), expected)

    recent = load_replay(engine, "default", since=T0 + timedelta(seconds=2), limit=3)
    assert list(recent["request_id"]) == ["r3", "r4", "r5"]  # the newest `limit` rows
    assert list(load_replay(engine, "default", labelled_only=True)["request_id"]) == ["r0", "r1", "r2", "r3"]
    assert load_replay(engine, "nothing-here").empty


def test_better_challenger_passes_and_replay_is_faithful(engine):
    frame = traffic()
    log_traffic(engine, frame, champion_scores(frame))
    report = run(engine, onnx_model(2))
    assert report.verdict == "pass", report.reasons
    assert report.labelled_rows == report.scored_rows == ROWS
    assert report.auc_diff > 0 and report.challenger["roc_auc"] > report.champion["roc_auc"]
    assert report.fidelity.faithful and report.fidelity.checked_rows == ROWS
    assert report.fidelity.max_abs_diff <= 1e-9
    assert 0 < report.agreement_rate <= 1 and report.mean_abs_score_diff > 0 and report.score_psi >= 0
    assert json.loads(json.dumps(report.to_dict()))["fidelity"]["faithful"] is True
    assert "## Offline backtest: PASS" in report.to_markdown()
    assert report.enforce() is report


def test_identical_challenger_passes_with_no_shift(engine):
    frame = traffic()
    log_traffic(engine, frame, champion_scores(frame))
    report = run(engine, onnx_model(1))
    assert report.verdict == "pass"
    assert report.auc_diff == 0 and report.logloss_diff == 0
    assert report.agreement_rate == 1 and report.mean_abs_score_diff == 0 and report.score_psi == 0


def test_clearly_worse_challenger_fails_with_the_numbers(engine):
    frame = traffic()
    log_traffic(engine, frame, champion_scores(frame))
    report = run(engine, inverted_model())
    assert report.verdict == "fail"
    assert report.auc_diff < -0.5
    champion_auc, challenger_auc = report.champion["roc_auc"], report.challenger["roc_auc"]
    assert any(f"challenger AUC {challenger_auc:.4f}" in r and f"champion AUC {champion_auc:.4f}" in r
               for r in report.reasons)
    assert any("log loss" in r and "logloss_margin 0.02" in r for r in report.reasons)
    with pytest.raises(BacktestFailedError, match=rf"AUC {challenger_auc:.4f} is .* below champion") as caught:
        report.enforce(on_insufficient="skip")
    assert caught.value.report is report
    assert "FAIL" in report.to_markdown()


def test_too_few_labels_is_insufficient_and_the_policy_decides(engine):
    frame = traffic()
    log_traffic(engine, frame, champion_scores(frame), labelled=50)
    report = run(engine, inverted_model())  # worse, but there is not enough evidence to say so
    assert report.verdict == "insufficient"
    assert report.labelled_rows == 50 and report.scored_rows == ROWS
    assert "only 50 labelled rows" in report.reasons[0] and "min_labelled_rows is 200" in report.reasons[0]
    assert report.agreement_rate is not None  # the unlabelled comparisons are still reported
    assert report.enforce(on_insufficient="skip") is report
    with pytest.raises(BacktestFailedError, match="insufficient"):
        report.enforce(on_insufficient="fail")
    assert run(engine, onnx_model(2), BacktestSettings(min_labelled_rows=40)).verdict == "pass"


def test_fidelity_check_catches_logged_scores_the_champion_does_not_reproduce(engine):
    frame = traffic()
    scores = champion_scores(frame)
    scores[:7] += 1e-6  # e.g. the log was written by another artifact under the champion's version
    log_traffic(engine, frame, scores)
    report = run(engine, onnx_model(2))
    assert report.verdict == "fail"
    assert report.fidelity.faithful is False and report.fidelity.mismatched_rows == 7
    assert report.fidelity.max_abs_diff == pytest.approx(1e-6, rel=1e-3)
    assert "replay is not faithful" in report.reasons[0]

    # Rows served by another version are not the champion's to reproduce.
    unchecked = run(engine, onnx_model(2), version="7")
    assert unchecked.verdict == "pass" and unchecked.fidelity.faithful is None
    assert any("fidelity unchecked" in r for r in unchecked.reasons)


def test_bad_feature_rows_are_counted_not_crashing(engine):
    frame = traffic()
    texts = [json.dumps(row, sort_keys=True) for row in frame[FEATURES].to_dict("records")]
    bad = dict(frame[FEATURES].iloc[3])
    texts[0] = "{not json"
    texts[1] = "[1, 2, 3]"
    texts[2] = json.dumps({k: v for k, v in bad.items() if k != "age"})
    texts[3] = json.dumps({**bad, "age": "forty"})
    log_traffic(engine, frame, [0.5] * 4 + list(champion_scores(frame.iloc[4:])), features=texts)
    report = run(engine, onnx_model(2))
    assert report.verdict == "pass", report.reasons
    assert report.rejected == {"bad_json": 2, "champion": 2, "challenger": 2, "non_binary_label": 0}
    assert report.scored_rows == ROWS - 4
    reasons = [e["reason"] for e in report.rejected_examples]
    assert "not valid JSON" in reasons[0] and "JSON object" in reasons[1]
    assert "missing feature(s) ['age']" in reasons[2] and "'age'" in reasons[3]
    # Served by the champion yet not replayable: reported, while the rest still proves fidelity.
    assert report.fidelity.rejected_rows == 2 and report.fidelity.faithful is True
    assert report.fidelity.checked_rows == ROWS - 4
    assert "2 of 400 replayed rows are rejected by the challenger" in report.to_markdown()


def test_versions_are_downloaded_and_replayed_over_the_lookback(engine):
    frame = traffic()
    log_traffic(engine, frame, champion_scores(frame))
    settings = BacktestSettings(lookback=timedelta(minutes=5), decision_threshold=0.5)
    report = backtest_versions(FakeRegistry(), engine, MODEL, "default", "champion", "challenger", settings,
                               now=T0 + timedelta(seconds=ROWS + 60))
    assert report.champion_version == "1" and report.fidelity.faithful
    assert report.replayed_rows == ROWS - 160  # row i is logged at T0 + i s: since = T0 + 160 s
    assert report.verdict == "pass" and report.reason in report.summary()


def test_an_empty_log_is_insufficient(engine):
    report = run(engine, onnx_model(2))
    assert report.verdict == "insufficient" and report.replayed_rows == 0
    assert report.score_psi is None and report.fidelity.faithful is None
    assert "n/a" in report.to_markdown()


def test_settings_are_validated():
    # Users set them through the rollout Params: RolloutPlan.parse names the field (test_plan.py).
    assert BacktestSettings(auc_margin=0.02).auc_margin == 0.02
    with pytest.raises(ValidationError, match="auc_margin"):
        BacktestSettings(auc_margin=-1)
    with pytest.raises(ValidationError, match="unknown"):
        BacktestSettings(unknown=1)
    settings = BacktestSettings()
    assert BacktestSettings.model_validate(settings.model_dump(mode="json")) == settings
    assert settings.since(T0) == T0 - timedelta(days=7)
