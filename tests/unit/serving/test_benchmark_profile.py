"""The serving benchmark's `--profile` table: py-spy's collapsed stacks sorted into the
gateway's parts, the innermost recognised frame deciding."""

from __future__ import annotations

import pytest

from tests.support.benchmarks import load_benchmark


@pytest.fixture(scope="module")
def serving():
    with load_benchmark("serving") as module:
        yield module


LOOP = "Runner.run (asyncio/runners.py:118);ScoringFastPath.__call__ (flightdeck/serving/scoring.py:210)"


def test_innermost_recognised_frame_decides(serving):
    collapsed = "\n".join([
        # the model call inside the gateway's glue counts as the model, not as the glue
        f"{LOOP};mlflow_invocations (flightdeck/serving/scoring.py:132);Gateway.predict (flightdeck/serving/gateway.py:517);"
        "score_feeds (flightdeck/runtime.py:172);Session.run (onnxruntime/capi/onnxruntime_inference_collection.py:406) 6",
        f"{LOOP};Gateway._record (flightdeck/serving/gateway.py:620);RunningStats.record (flightdeck/serving/stats.py:90) 2",
        "Thread._bootstrap (threading.py:995);PredictionLogWriter._run (flightdeck/serving/predlog.py:191);"
        "_copy_rows (flightdeck/serving/predlog.py:355) 1",
        "RequestResponseCycle.send (uvicorn/protocols/http/httptools_impl.py:524) 1",
        "",  # blank lines and a stack with no count are skipped
        "garbage-without-count",
    ])
    shares = dict(serving.profile_shares(collapsed))
    assert shares == pytest.approx({"ONNX Runtime (live and shadow scoring)": 0.6, "recording: running sums": 0.2,
                                    "prediction-log writer thread (COPY text, psycopg2)": 0.1,
                                    "HTTP server and event loop": 0.1})


def test_unrecognised_stacks_are_other_and_order_is_largest_first(serving):
    shares = serving.profile_shares("main (app.py:1);helper (lib/x.py:2) 1\n"
                                    "Runner.run (asyncio/runners.py:118) 3\n")
    assert shares == [("HTTP server and event loop", 0.75), ("other", 0.25)]
    assert serving.profile_shares("") == []
