"""
### edge_export

Export a registered version for devices and publish it over the air:

resolve the Param `model_ref` (version number or alias) → export ONNX float (the registered
bytes) and ONNX int8 (dynamic quantisation), and a small Keras student distilled from the
model's scores, converted to TFLite float32 / float16 / full-integer int8 → measure size, single-row latency
(ONNX Runtime, LiteRT interpreter) and holdout AUC → log the table and artifacts to MLflow →
**gates** (float exports within 1e-5 of their source; quantised and distilled ones lose at
most 0.5 % of the champion's AUC; a miss fails the run naming the artifact and the miss) →
sign the chosen artifact (Ed25519) and publish the bundle with its rollout percentage.

Devices run `flightdeck edge-agent` against the same store with the public key.

It also runs by itself when train_register registers a new version and the pipeline file turns
this link on for the model (asset `flightdeck_registered_edge_export`): model and version come from
the registration, the other Params from the pipeline file.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, chain

from flightdeck.airflow import edge, pipeline
from flightdeck.airflow.defaults import DEFAULT_ARGS

DAG_ID = "edge_export"

with DAG(
    dag_id=DAG_ID,
    description="ONNX int8 + distilled TFLite exports, gates, signed OTA bundle.",
    doc_md=__doc__,
    schedule=pipeline.release_schedule(DAG_ID),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["flightdeck", "edge", "release"],
    params=edge.edge_params(),
) as dag:
    resolved = edge.resolve_export()
    exported = edge.export_artifacts(resolved)
    logged = edge.log_to_mlflow(resolved, exported)
    gated = edge.check_gates(logged)
    published = edge.publish_bundle(resolved)
    chain(resolved, exported, logged, gated, published)
