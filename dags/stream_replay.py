"""
### stream_replay

Re-score a range of the scorer's input stream through the **batch path** (after a model
change): read the events between `start` and `end` (Redis entry ids, or epoch milliseconds
for a time range), score them with the chosen model (`champion` by default) using the batch
scoring function, and write `predictions/replay/replay-<run_id>.parquet`.

Trigger it by hand with a range, e.g. `{"start": "1795904875000", "end": "1795904999999"}`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, task

from flightdeck.airflow.defaults import DEFAULT_ARGS, fail_fast_on_user_error
from flightdeck.config import get_settings

DAG_ID = "stream_replay"


@task
def replay_range(params=None, run_id=None) -> dict:
    from flightdeck.batch.pipeline import resolve_model
    from flightdeck.batch.scoring import ModelArtifact
    from flightdeck.registry import Registry
    from flightdeck.streaming.replay import replay

    settings = get_settings()
    with fail_fast_on_user_error():
        registry = Registry.from_settings(settings)
        pinned = resolve_model(params["model_name"], params["model_version"], registry)
        version, onnx_bytes = registry.download_onnx(params["model_name"], pinned["version"])
        return replay(params["redis_url"] or settings.redis_url, params["stream"], params["start"], params["end"],
                      ModelArtifact(params["model_name"], version, onnx_bytes),
                      settings.home / "predictions" / "replay", run_id, settings.decision_threshold)


settings = get_settings()

with DAG(
    dag_id=DAG_ID,
    description="Replay a range of the event stream through the batch scoring path.",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["flightdeck", "streaming"],
    params={
        "stream": Param("flightdeck:events", type="string"),
        "start": Param("-", type="string", description="First entry id or epoch ms ('-' = oldest)."),
        "end": Param("+", type="string", description="Last entry id or epoch ms ('+' = newest)."),
        "redis_url": Param(None, type=["null", "string"]),
        "model_name": Param(settings.model_name, type="string", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
        "model_version": Param(None, type=["null", "string"], pattern=r"^[0-9]+$"),
    },
) as dag:
    replay_range()
