"""Batch scoring on a real `dask scheduler` and two `dask worker` processes on loopback,
including a worker SIGKILLed in the middle of a job."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from distributed import Client

from flightdeck import runtime
from flightdeck.batch.cluster import dask_client
from flightdeck.batch.scoring import ModelArtifact, ScoringJob, score_partition, session_loads
from flightdeck.data.generator import generate_partition
from flightdeck.data.partitions import list_partitions, read_partition, write_parquet
from flightdeck.data.schema import ENTITY_ID
from flightdeck.training.export import to_onnx
from flightdeck.training.train import fit_pipeline
from tests.support.dask import DaskProcesses
from tests.support.poll import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

DAY = date(2026, 5, 4)
SCORED_AT = datetime(2026, 5, 5, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def model() -> ModelArtifact:
    pipeline = fit_pipeline(generate_partition("2026-01-10", rows=3000, seed=3), "logistic_regression", seed=1)
    return ModelArtifact("flightdeck-classifier", "4", to_onnx(pipeline, "m").SerializeToString())


@pytest.fixture(scope="module")
def processes(tmp_path_factory):
    """A scheduler and two nanny-managed workers, as `dask worker` runs in production."""
    with DaskProcesses(tmp_path_factory.mktemp("dask-logs")) as procs:
        procs.start_scheduler()
        procs.start_worker()
        procs.start_worker()
        yield procs


def _job(files, output_root, model, **overrides) -> ScoringJob:
    fields = dict(ds=DAY, input_files=files, output_root=output_root, model=model, run_id="nightly",
                  scored_at=SCORED_AT, threshold=0.5)
    return ScoringJob(**(fields | overrides))


def test_scores_a_multi_file_day_on_real_workers(processes, model, tmp_path):
    files = []
    for i in range(6):
        files.append(tmp_path / "raw" / f"chunk-{i}.parquet")
        files[-1].parent.mkdir(exist_ok=True)
        write_parquet(generate_partition(f"2026-05-0{i + 1}", rows=4000, seed=i), files[-1])
    exclude = {"chunk-2.parquet": [0, 17, 3999]}

    with dask_client(processes.address, n_workers=2, timeout=60) as client:
        result = score_partition(client, _job(files, tmp_path / "out", model, exclude_rows=exclude,
                                              batch_rows=1500))
        loads = {w: c.get(model.sha256, 0) for w, c in client.run(session_loads).items()}

    out = read_partition(tmp_path / "out", DAY)
    inputs = pd.concat([pd.read_parquet(f).drop(index=exclude.get(f.name, [])) for f in files],
                       ignore_index=True)
    assert (result.rows_scored, result.rows_excluded, result.files) == (6 * 4000 - 3, 3, 6)
    assert out[ENTITY_ID].tolist() == inputs[ENTITY_ID].tolist()
    expected = runtime.score(runtime.load_session(model.onnx_bytes), inputs)
    np.testing.assert_allclose(out["score"].to_numpy(), expected, rtol=0, atol=1e-12)
    assert (out["predicted_label"] == (expected >= 0.5)).all()
    assert len(loads) == 2 and all(n <= 1 for n in loads.values()) and sum(loads.values()) >= 1
    # dask_client only disconnected: the external cluster still serves other clients.
    with Client(processes.address, timeout=10) as other:
        assert len(other.scheduler_info(n_workers=-1)["workers"]) == 2


def test_a_worker_killed_mid_job_loses_and_duplicates_nothing(model, tmp_path):
    # 24 files of 40k rows: long enough on two workers to kill one in the middle. The files
    # share features but not ids, so a row written from the wrong file would show.
    base = generate_partition("2026-04-01", rows=40_000, seed=11)
    files = []
    (tmp_path / "raw").mkdir()
    for i in range(24):
        files.append(tmp_path / "raw" / f"chunk-{i:02d}.parquet")
        write_parquet(base.assign(**{ENTITY_ID: f"F{i:02d}-" + base[ENTITY_ID]}), files[-1])
    out_root = tmp_path / "out"
    job = _job(files, out_root, model, batch_rows=10_000)

    with DaskProcesses(tmp_path) as procs:
        procs.start_scheduler()
        doomed, _ = procs.start_worker(nanny=False), procs.start_worker(nanny=False)
        with dask_client(procs.address, n_workers=2, timeout=60) as client:
            outcome: dict = {}
            runner = threading.Thread(target=_run_into, args=(outcome, client, job))
            runner.start()
            done_at_kill = _wait_for_first_part(out_root, runner)
            procs.kill(doomed)
            runner.join(timeout=120)
            assert not runner.is_alive(), procs.logs()
            assert 0 < done_at_kill < len(files), "the kill must land while tasks are in flight"
            if "error" in outcome:  # allowed: the job fails, then a re-run must be clean
                assert list_partitions(out_root) == [], "a failed job must not publish a partition"
                score_partition(client, job)
            else:
                assert outcome["result"].rows_scored == 24 * 40_000
            assert len(client.scheduler_info(n_workers=-1)["workers"]) == 1

    partition = out_root / f"ds={DAY:%Y-%m-%d}"
    assert sorted(p.name for p in partition.iterdir()) == [f"part-{i:05d}.parquet" for i in range(24)]
    assert list_partitions(out_root) == [DAY]
    expected = runtime.score(runtime.load_session(model.onnx_bytes), base)
    for i in range(24):
        part = pd.read_parquet(partition / f"part-{i:05d}.parquet")
        assert part[ENTITY_ID].tolist() == (f"F{i:02d}-" + base[ENTITY_ID]).tolist()
        np.testing.assert_allclose(part["score"].to_numpy(), expected, rtol=0, atol=1e-12)
    assert read_partition(out_root, DAY)[ENTITY_ID].is_unique


def _run_into(outcome: dict, client: Client, job: ScoringJob) -> None:
    try:
        outcome["result"] = score_partition(client, job)
    except Exception as exc:  # reported to the test thread
        outcome["error"] = exc


def _wait_for_first_part(out_root: Path, runner: threading.Thread, timeout: float = 60) -> int:
    """Block until a task has written its file into the staging folder; return how many have."""
    def count_or_end() -> tuple[int] | None:
        done = list(out_root.glob(".ds=*.tmp-*/part-*.parquet"))
        return (len(done),) if done or not runner.is_alive() else None

    return eventually(count_or_end, timeout, 0.005, what="a task to finish a file")[0]
