"""The Spark Structured Streaming example on a local[1] Spark: its scores equal the batch path's,
a bad line is kept with its reason, and a restarted query scores only the new files."""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flightdeck.data.schema import ENTITY_ID, FEATURES
from tests.integration.streaming.conftest import events
from tests.support.models import onnx_model

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java 17+ (no `java` on PATH)")
    from flightdeck.streaming.engines.spark_job import local_session

    session = local_session("flightdeck-test")
    yield session
    session.stop()


def _write(folder: Path, name: str, lines: list[bytes]) -> None:
    # Spark's file source may list a file while it is written: write elsewhere, then move it in.
    tmp = folder.parent / f".{name}"
    tmp.write_bytes(b"\n".join(lines) + b"\n")
    tmp.rename(folder / name)


def _batch_scores(rows: list[dict], onnx: bytes, version: str) -> pd.DataFrame:
    """The batch path (flightdeck.batch.scoring.score_file_to) on the same rows."""
    from flightdeck import runtime
    from flightdeck.batch.scoring import ModelArtifact, ScoringJob, score_file_to

    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "events.parquet", Path(tmp) / "scored.parquet"
        pd.DataFrame(rows, columns=[ENTITY_ID, *FEATURES]).to_parquet(source, index=False)
        job = ScoringJob(ds=datetime(2026, 2, 1).date(), input_files=[source], output_root=Path(tmp),
                         model=ModelArtifact("m", version, onnx), run_id="spark-parity", scored_at=datetime.now(UTC),
                         threshold=0.5)
        score_file_to(source, out, runtime.load_session(onnx), job)
        return pd.read_parquet(out)


def test_spark_streaming_scores_equal_the_batch_path_and_restart_adds_only_new_files(spark, base_events, tmp_path):
    from flightdeck.streaming.engines.spark_job import build_query

    onnx = onnx_model(1)
    inbox, out, checkpoint = tmp_path / "in", tmp_path / "out", tmp_path / "checkpoint"
    inbox.mkdir()
    values = events(base_events, 400)
    for i in range(3):
        _write(inbox, f"part-{i}.jsonl", values[i * 100:(i + 1) * 100] + ([b"{broken"] if i == 1 else []))

    def run_once():
        query = build_query(spark, str(inbox), str(out), str(checkpoint), onnx, "5").trigger(availableNow=True).start()
        query.awaitTermination(120)
        assert query.exception() is None

    run_once()
    first = pd.read_parquet(out)
    scored = first[first["error"].isna()].sort_values("event_id", key=lambda s: s.str[1:].astype(int))
    assert len(first) == 301 and len(scored) == 300
    (bad,) = first[first["error"].notna()].itertuples()
    assert bad.value == "{broken" and "not JSON" in bad.error
    assert set(scored["model_version"]) == {"5"}

    rows = [json.loads(v) for v in values[:300]]
    batch = _batch_scores(rows, onnx, "5")
    assert list(scored["entity_id"]) == [r[ENTITY_ID] for r in rows]
    np.testing.assert_allclose(scored["score"].to_numpy(), batch["score"].to_numpy(), rtol=0, atol=1e-12)
    assert list(scored["label"]) == list(batch["predicted_label"])

    _write(inbox, "part-3.jsonl", values[300:])  # the query stopped; a restart reads only this file
    run_once()
    second = pd.read_parquet(out)
    ids = second["event_id"].dropna()
    assert len(second) == 401 and ids.is_unique and set(ids) == {f"e{i}" for i in range(400)}
