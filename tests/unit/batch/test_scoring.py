"""Batch scoring on a 2-process LocalCluster: output contract, exactly-once rows, one scoring
function, quarantine exclusions, atomic re-runs, failures and one ONNX session per worker."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from flightdeck import runtime
from flightdeck.batch.cluster import dask_client
from flightdeck.batch.scoring import (
    PREDICTION_COLUMNS,
    EmptyInputError,
    ModelArtifact,
    ScoringInputError,
    ScoringJob,
    score_file,
    score_file_to,
    score_partition,
    session_loads,
)
from flightdeck.data.generator import generate_partition
from flightdeck.data.partitions import list_partitions, read_partition, write_parquet
from flightdeck.data.schema import ENTITY_ID
from flightdeck.errors import ConfigError
from flightdeck.training.export import to_onnx
from flightdeck.training.train import fit_pipeline

DAY = date(2026, 3, 1)
SCORED_AT = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
ROWS_PER_FILE = 1500


def _model(train_seed: int, version: str = "1") -> ModelArtifact:
    train = generate_partition("2026-01-15", rows=3000, seed=train_seed)
    pipeline = fit_pipeline(train, "logistic_regression", seed=7)
    return ModelArtifact("flightdeck-classifier", version, to_onnx(pipeline, "m").SerializeToString())


def _write_raw(folder: Path, count: int, rows: int = ROWS_PER_FILE) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"part-{i}.parquet"
        write_parquet(generate_partition(f"2026-02-{i + 1:02d}", rows=rows, seed=100 + i), path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def client():
    with dask_client(n_workers=2) as client:
        yield client


@pytest.fixture(scope="module")
def model() -> ModelArtifact:
    return _model(train_seed=1)


@pytest.fixture(scope="module")
def raw_files(tmp_path_factory) -> list[Path]:
    return _write_raw(tmp_path_factory.mktemp("raw"), 3)


def _job(files, output_root, model, **overrides) -> ScoringJob:
    fields = dict(ds=DAY, input_files=files, output_root=output_root, model=model, run_id="run-1",
                  scored_at=SCORED_AT, threshold=0.3)
    return ScoringJob(**(fields | overrides))


def _expected(files, model, exclude_rows=None) -> pd.DataFrame:
    """Input rows in file order minus exclusions, scored in one go with runtime.score."""
    frames = []
    for path in files:
        frame = pd.read_parquet(path)
        drop = (exclude_rows or {}).get(path.name, [])
        frames.append(frame.drop(index=list(drop)))
    rows = pd.concat(frames, ignore_index=True)
    rows["score"] = runtime.score(runtime.load_session(model.onnx_bytes), rows)
    return rows


def test_output_columns_dtypes_and_stamps(client, model, raw_files, tmp_path):
    result = score_partition(client, _job(raw_files, tmp_path, model))

    out = read_partition(tmp_path, DAY)
    assert tuple(out.columns) == PREDICTION_COLUMNS
    assert out["score"].dtype == np.float64
    assert out["predicted_label"].dtype == np.int8
    assert isinstance(out["scored_at"].dtype, pd.DatetimeTZDtype) and str(out["scored_at"].dt.tz) == "UTC"
    assert out["scored_at"].unique().tolist() == [pd.Timestamp(SCORED_AT)]
    assert out["score"].between(0, 1).all()
    assert (out["predicted_label"] == (out["score"] >= 0.3)).all()
    assert 0 < out["predicted_label"].mean() < 1
    assert set(out["model_name"]) == {"flightdeck-classifier"}
    assert set(out["model_version"]) == {"1"} and set(out["run_id"]) == {"run-1"}
    assert sorted(p.name for p in result.output_path.iterdir()) == [
        "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert (result.ds, result.files, result.rows_scored, result.rows_excluded) == (DAY, 3, 4500, 0)
    assert result.rows_per_second > 0 and result.seconds > 0


def test_every_kept_row_once_with_runtime_scores_streaming_in_small_batches(client, model, raw_files, tmp_path):
    # Exclusions at the first row, around a batch boundary (batch_rows=400) and at the end.
    exclude = {"part-0.parquet": [0, 399, 400, 1499], "part-2.parquet": [5, 5, 801]}
    result = score_partition(client, _job(raw_files, tmp_path, model, exclude_rows=exclude,
                                           batch_rows=400))

    out = read_partition(tmp_path, DAY)
    expected = _expected(raw_files, model, exclude)
    assert result.rows_scored == len(out) == len(expected) == 3 * ROWS_PER_FILE - 6
    assert result.rows_excluded == 6
    assert out[ENTITY_ID].tolist() == expected[ENTITY_ID].tolist()
    assert out[ENTITY_ID].is_unique
    np.testing.assert_allclose(out["score"].to_numpy(), expected["score"].to_numpy(), rtol=0, atol=1e-12)
    # Every input file was streamed in ceil(rows / batch_rows) batches, one row group each.
    first = pq.ParquetFile(result.output_path / "part-00001.parquet")
    assert first.num_row_groups == math.ceil(ROWS_PER_FILE / 400)


def test_a_file_whose_rows_are_all_excluded_yields_an_empty_part(client, model, raw_files, tmp_path):
    exclude = {"part-1.parquet": range(ROWS_PER_FILE)}
    result = score_partition(client, _job(raw_files, tmp_path, model, exclude_rows=exclude))

    assert (result.rows_scored, result.rows_excluded) == (2 * ROWS_PER_FILE, ROWS_PER_FILE)
    assert pq.ParquetFile(result.output_path / "part-00001.parquet").metadata.num_rows == 0
    assert len(read_partition(tmp_path, DAY)) == 2 * ROWS_PER_FILE


def test_rerun_replaces_the_partition(client, model, raw_files, tmp_path):
    score_partition(client, _job(raw_files, tmp_path, model, run_id="first"))
    first = read_partition(tmp_path, DAY)
    score_partition(client, _job(raw_files, tmp_path, model, run_id="second"))
    second = read_partition(tmp_path, DAY)

    assert len(second) == len(first) == 3 * ROWS_PER_FILE
    assert second[ENTITY_ID].is_unique
    assert set(second["run_id"]) == {"second"}
    pd.testing.assert_frame_equal(second.drop(columns="run_id"), first.drop(columns="run_id"))
    assert list_partitions(tmp_path) == [DAY]
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == ["ds=2026-03-01"]


def test_a_broken_input_file_fails_the_run_and_keeps_the_previous_partition(client, model, raw_files, tmp_path):
    score_partition(client, _job(raw_files, tmp_path, model, run_id="good"))
    before = read_partition(tmp_path, DAY)
    broken = tmp_path.parent / "notes.parquet"
    broken.write_text("this is not parquet")

    with pytest.raises(ScoringInputError, match="notes.parquet is not a readable parquet file"):
        score_partition(client, _job([*raw_files, broken], tmp_path, model, run_id="bad"))

    pd.testing.assert_frame_equal(read_partition(tmp_path, DAY), before)
    assert list_partitions(tmp_path) == [DAY]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ds=2026-03-01.lock", "ds=2026-03-01"]


def test_exclusions_past_the_end_of_a_file_fail_on_the_worker(client, model, raw_files, tmp_path):
    job = _job(raw_files, tmp_path, model, exclude_rows={"part-0.parquet": [ROWS_PER_FILE]})
    with pytest.raises(ScoringInputError, match=f"part-0.parquet name row {ROWS_PER_FILE} but it has"):
        score_partition(client, job)
    assert list_partitions(tmp_path) == []


def test_one_onnx_session_per_worker_for_many_files(client, tmp_path):
    model = _model(train_seed=2, version="2")  # a model no other test has loaded
    files = _write_raw(tmp_path / "raw", 12, rows=200)
    loads_before = client.run(session_loads)

    result = score_partition(client, _job(files, tmp_path / "out", model))
    score_partition(client, _job(files, tmp_path / "out", model, run_id="run-2"))

    assert result.rows_scored == 12 * 200
    loads = {worker: counts.get(model.sha256, 0) for worker, counts in client.run(session_loads).items()}
    assert len(loads) == 2
    assert all(n <= 1 for n in loads.values()), loads
    assert sum(loads.values()) >= 1
    assert all(counts.get(model.sha256, 0) == 0 for counts in loads_before.values())


def test_score_file_and_score_file_to_agree_without_a_cluster(model, raw_files, tmp_path):
    job = _job(raw_files, tmp_path, model, batch_rows=256, exclude_rows={"part-0.parquet": [3, 700]})
    session = runtime.load_session(model.onnx_bytes)
    out_path = tmp_path / "scored.parquet"

    rows = score_file_to(raw_files[0], out_path, session, job)
    in_memory = score_file(raw_files[0], session, job)

    written = pd.read_parquet(out_path)
    assert rows == len(written) == len(in_memory) == ROWS_PER_FILE - 2
    pd.testing.assert_frame_equal(written, in_memory)
    assert pq.ParquetFile(out_path).num_row_groups == math.ceil(ROWS_PER_FILE / 256)
    assert [p.name for p in tmp_path.iterdir()] == ["scored.parquet"], "no temp file left behind"
    expected = _expected(raw_files[:1], model, job.exclude_rows)
    np.testing.assert_allclose(written["score"], expected["score"], rtol=0, atol=1e-12)


def test_missing_feature_column_names_the_file_and_column(model, raw_files, tmp_path):
    path = tmp_path / "thin.parquet"
    write_parquet(pd.read_parquet(raw_files[0]).drop(columns=["credit_score"]), path)
    session = runtime.load_session(model.onnx_bytes)
    with pytest.raises(ScoringInputError, match=r"thin.parquet has no column\(s\) \['credit_score'\]"):
        score_file(path, session, _job([path], tmp_path, model))


def test_unscorable_rows_name_the_file_and_row_range(model, raw_files, tmp_path):
    frame = pd.read_parquet(raw_files[0])
    frame.loc[10, "age"] = np.nan
    path = tmp_path / "gappy.parquet"
    write_parquet(frame, path)
    session = runtime.load_session(model.onnx_bytes)
    job = _job([path], tmp_path, model, batch_rows=500)
    with pytest.raises(runtime.InvalidInputError, match=r"gappy.parquet, rows 0..499: column 'age'"):
        score_file(path, session, job)
    # Quarantining the row makes the file scorable.
    assert len(score_file(path, session, job, exclude=[10])) == ROWS_PER_FILE - 1


def test_job_validation_errors_are_typed(model, raw_files, tmp_path):
    with pytest.raises(EmptyInputError, match="ds=2026-03-01"):
        _job([], tmp_path, model)
    with pytest.raises(ConfigError, match="scored_at"):
        _job(raw_files, tmp_path, model, scored_at=datetime(2026, 3, 2))
    with pytest.raises(ConfigError, match="threshold"):
        _job(raw_files, tmp_path, model, threshold=1.5)
    with pytest.raises(ScoringInputError, match=r"\['other.parquet'\]"):
        _job(raw_files, tmp_path, model, exclude_rows={"other.parquet": [1]})
    with pytest.raises(ScoringInputError, match="negative row position"):
        score_file(raw_files[0], runtime.load_session(model.onnx_bytes),
                   _job(raw_files, tmp_path, model), exclude=[-1])
    job = _job([str(p) for p in raw_files], str(tmp_path), model, ds="2026-03-01")
    assert job.ds == DAY and isinstance(job.output_root, Path) and isinstance(job.input_files[0], Path)
    assert len(model.sha256) == 64 and "onnx_bytes" not in repr(model)


def test_back_to_back_jobs_of_one_model_do_not_lose_the_model(client, model, raw_files, tmp_path):
    # Each job broadcasts the model and releases it at the end; the next job must not have
    # its own copy deleted by that release.
    for i in range(8):
        result = score_partition(client, _job(raw_files[:2], tmp_path, model, run_id=f"run-{i}"))
        assert result.rows_scored == 2 * ROWS_PER_FILE
