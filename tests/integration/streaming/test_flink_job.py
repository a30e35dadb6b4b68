"""The Flink example (PyFlink on the local mini-cluster, run by the interpreter of its own venv):
its scores equal the batch path's, its event-time windows equal the stream scorer's windows on the
same events, its keyed state counts each entity's events, and a bad line is kept with its reason."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flightdeck.data.schema import ENTITY_ID, FEATURES
from flightdeck.streaming.engines.flink_job import OUTPUTS, read_output
from tests.integration.streaming.conftest import events
from tests.support.models import onnx_model
from tests.support.services import require_service

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[3]
WINDOW_S = 3600.0
VERSION = "5"


def flink_python() -> str:
    """The interpreter of the Flink venv (FLIGHTDECK_FLINK_PYTHON, exported by the Makefile); skips
    locally, fails under CI when it (or Java) is not there."""
    path = os.environ.get("FLIGHTDECK_FLINK_PYTHON")
    require_service(
        f"PyFlink's venv (FLIGHTDECK_FLINK_PYTHON={path!r}; Fix: `make test` builds .venv-flink and exports it)",
        lambda: path and Path(path).is_file() and os.access(path, os.X_OK),
    )
    require_service("Java for Flink's mini-cluster (`java` on PATH; Fix: install a JRE 17)",
                    lambda: shutil.which("java"))
    return path


def _shuffled_lines(base_events: list[dict]) -> tuple[list[bytes], float]:
    """400 events in event-time order with neighbours swapped at random (bounded disorder), and the
    watermark delay that covers the disorder (so no event is late for either engine)."""
    values = events(base_events, 400)
    rng = random.Random(20)
    for i, value in enumerate(values):  # 60 entities, so that the keyed state sees repeat visits
        row = json.loads(value)
        row[ENTITY_ID] = f"C{rng.randrange(60):010d}"
        values[i] = json.dumps(row).encode()
    for i in range(0, len(values) - 1, 2):
        if rng.random() < 0.5:
            values[i], values[i + 1] = values[i + 1], values[i]
    times = [datetime.fromisoformat(json.loads(v)["event_time"]).timestamp() for v in values]
    disorder = max(max(times[:i]) - times[i] for i in range(1, len(times)))
    assert disorder > 0, "the events should be out of order, or the watermark delay is not exercised"
    return values, disorder + 60.0


@pytest.fixture(scope="module")
def flink_run(base_events, tmp_path_factory):
    """One run of the job as a user runs it: the module's CLI in the Flink venv's interpreter."""
    python = flink_python()
    root = tmp_path_factory.mktemp("flink")
    inbox, out, model = root / "in", root / "out", root / "model.onnx"
    inbox.mkdir()
    model.write_bytes(onnx_model(1))
    values, lateness = _shuffled_lines(base_events)
    # One file: Flink reads a folder's files one split at a time in no fixed order, and the watermark
    # is the reader's, so events spread over files could be late depending on which file comes first.
    lines = values[:150] + [b"{broken"] + values[150:]
    (inbox / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    done = subprocess.run(
        [python, "-m", "flightdeck.streaming.engines.flink_job", "--input", str(inbox), "--output", str(out),
         "--model-file", str(model), "--model-version", VERSION, "--window-size", str(WINDOW_S),
         "--allowed-lateness", str(lateness)],
        capture_output=True, text=True, timeout=200, cwd=REPO)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    read = {name: [json.loads(line) for line in read_output(out, name)] for name in OUTPUTS}
    assert {name: summary[name] for name in OUTPUTS} == {name: len(lines) for name, lines in read.items()}
    return {"summary": summary, "values": values, "lateness": lateness, **read}


def _batch_scores(rows: list[dict], onnx: bytes) -> pd.DataFrame:
    """The batch path (flightdeck.batch.scoring.score_file_to) on the same rows."""
    from flightdeck import runtime
    from flightdeck.batch.scoring import ModelArtifact, ScoringJob, score_file_to

    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "events.parquet", Path(tmp) / "scored.parquet"
        pd.DataFrame(rows, columns=[ENTITY_ID, *FEATURES]).to_parquet(source, index=False)
        job = ScoringJob(ds=datetime(2026, 2, 1).date(), input_files=[source], output_root=Path(tmp),
                         model=ModelArtifact("m", VERSION, onnx), run_id="flink-parity",
                         scored_at=datetime.now(UTC), threshold=0.5)
        score_file_to(source, out, runtime.load_session(onnx), job)
        return pd.read_parquet(out)


def test_flink_scores_equal_the_batch_path_and_a_bad_line_is_kept(flink_run):
    results, values = flink_run["results"], flink_run["values"]
    assert flink_run["summary"]["results"] == len(results) == 400
    by_id = {r["event_id"]: r for r in results}
    assert len(by_id) == 400 and {r["model_version"] for r in results} == {VERSION}
    rows = [json.loads(v) for v in values]
    batch = _batch_scores(rows, onnx_model(1))
    flink = [by_id[r["event_id"]] for r in rows]
    assert [r["entity_id"] for r in flink] == [r[ENTITY_ID] for r in rows]
    np.testing.assert_allclose([r["score"] for r in flink], batch["score"].to_numpy(), rtol=0, atol=1e-12)
    assert [r["label"] for r in flink] == list(batch["predicted_label"])

    (bad,) = flink_run["dead_letters"]
    assert bad["value"] == "{broken" and "not JSON" in bad["error"]
    assert flink_run["late_events"] == []


def test_flink_windows_equal_the_stream_scorers_windows(flink_run):
    """The stream scorer's window code (flightdeck.streaming.windows), in process, on the same events
    in the same order and with the same watermark delay."""
    from flightdeck.streaming.events import Record, parse_event
    from flightdeck.streaming.windows import Windows

    scores = {r["event_id"]: r["score"] for r in flink_run["results"]}
    windows = Windows("flink", WINDOW_S, allowed_lateness_s=flink_run["lateness"], max_future_skew_s=None)
    expected = {}
    for value in flink_run["values"]:
        event = parse_event(Record("", value))
        assert windows.add(event.event_time, VERSION, scores[event.event_id], event.features) == []
        expected.update({(r["start"], r["model_version"]): r for r in windows.close_ready()})
    assert windows.late_total == 0 and expected, "the watermark closed windows during the stream"
    for start, version, count, total, _, bins, *_ in windows.state()["open"]:  # still open at the end
        expected[(start, version)] = {"count": count, "score_mean": total / count, "score_bins": bins}

    got = {(w["start"], w["model_version"]): w for w in flink_run["windows"]}
    assert sorted(got) == sorted(expected)
    for key, record in expected.items():
        assert got[key]["count"] == record["count"], key
        assert got[key]["score_bins"] == record["score_bins"], key
        assert got[key]["score_mean"] == pytest.approx(record["score_mean"], abs=1e-12), key
        assert got[key]["end"] - got[key]["start"] == WINDOW_S
    assert sum(w["count"] for w in got.values()) == 400


def test_flink_keyed_state_follows_each_entity(flink_run):
    """Per-entity ValueState: the n-th event of an entity carries n and the rolling mean of its scores
    (newest weighted 0.2), as the stream scorer's entity state does."""
    by_id = {r["event_id"]: r for r in flink_run["results"]}
    seen: dict[str, tuple[int, float]] = {}
    for r in (by_id[json.loads(v)["event_id"]] for v in flink_run["values"]):  # the file's order
        n, mean = seen.get(r["entity_id"], (0, r["score"]))
        n, mean = n + 1, r["score"] if n == 0 else 0.8 * mean + 0.2 * r["score"]
        seen[r["entity_id"]] = (n, mean)
        assert r["entity_events"] == n and r["entity_mean_score"] == pytest.approx(mean, abs=1e-12)
    assert len(seen) <= 60 and max(n for n, _ in seen.values()) > 3


def test_flink_job_refuses_bad_options_with_a_clear_error_before_starting_flink(tmp_path):
    python = flink_python()
    model = tmp_path / "model.onnx"
    model.write_bytes(b"")
    done = subprocess.run([python, "-m", "flightdeck.streaming.engines.flink_job", "--input",
                           str(tmp_path / "nowhere"), "--output", str(tmp_path / "out"), "--model-file", str(model)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2 and "--input" in done.stderr and "not a folder" in done.stderr, done.stderr
    (tmp_path / "in").mkdir()
    done = subprocess.run([python, "-m", "flightdeck.streaming.engines.flink_job", "--input", str(tmp_path / "in"),
                           "--output", str(tmp_path / "out"), "--model-file", str(model)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2 and "--model-file: not an ONNX model" in done.stderr, done.stderr
    model.write_bytes(onnx_model(1))
    (tmp_path / "out" / "results").mkdir(parents=True)
    (tmp_path / "out" / "results" / "results-old.jsonl").write_text("{}\n")
    done = subprocess.run([python, "-m", "flightdeck.streaming.engines.flink_job", "--input", str(tmp_path / "in"),
                           "--output", str(tmp_path / "out"), "--model-file", str(model)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2 and "--output" in done.stderr and "already holds results" in done.stderr, done.stderr
