"""
### stream_replay

Re-score a range of the scorer's input stream through the **batch path** (after a model
change): read the events between `start` and `end` (Redis entry ids, or epoch milliseconds
for a time range), score them with the chosen model (Param `model_ref`, `champion` by
default) using the batch scoring function, and write `predictions/replay/replay-<run_id>.parquet`.

Trigger it by hand with a range, e.g. `{"start": "1795904875000", "end": "1795904999999"}`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, chain

from flightdeck.airflow import streaming
from flightdeck.airflow.defaults import DEFAULT_ARGS

DAG_ID = "stream_replay"

with DAG(
    dag_id=DAG_ID,
    description="Replay a range of the event stream through the batch scoring path.",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["flightdeck", "streaming"],
    params=streaming.replay_params(),
) as dag:
    chain(streaming.replay_range())
