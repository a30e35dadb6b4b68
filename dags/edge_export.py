"""
### edge_export

Export a registered version for devices and publish it over the air:

resolve the version (number or alias) → export ONNX float (the registered bytes) and ONNX
int8 (dynamic quantisation), and a small Keras student distilled from the model's scores,
converted to TFLite float32 / float16 / full-integer int8 → measure size, single-row latency
(ONNX Runtime, LiteRT interpreter) and holdout AUC → log the table and artifacts to MLflow →
**gates** (float exports within 1e-5 of their source; quantised and distilled ones lose at
most 0.5 % of the champion's AUC; a miss fails the run naming the artifact and the miss) →
sign the chosen artifact (Ed25519) and publish the bundle with its rollout percentage.

Devices run `flightdeck edge-agent` against the same store with the public key.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, chain

from flightdeck.airflow import edge as e
from flightdeck.airflow.defaults import DEFAULT_ARGS
from flightdeck.config import get_settings

settings = get_settings()

with DAG(
    dag_id="edge_export",
    description="ONNX int8 + distilled TFLite exports, gates, signed OTA bundle.",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["flightdeck", "edge", "release"],
    params={
        "model_name": Param(settings.model_name, type="string", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
        "version": Param("champion", type="string", description="Version number or alias to export."),
        "publish_format": Param("tflite_int8", enum=["onnx_float", "onnx_int8", "tflite_float32",
                                                     "tflite_float16", "tflite_int8"],
                                description="Which artifact the bundle ships."),
        "store": Param(None, type=["null", "string"],
                       description="Folder or s3://bucket/prefix; default $FLIGHTDECK_HOME/edge/store."),
        "channel": Param("stable", type="string", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
        "rollout_percent": Param(100.0, type="number", minimum=0, maximum=100,
                                 description="Share of devices (by device-id hash) that take the bundle."),
    },
) as dag:
    resolved = e.resolve_export()
    exported = e.export_artifacts(resolved)
    logged = e.log_to_mlflow(resolved, exported)
    gated = e.check_gates(logged)
    published = e.publish_bundle(resolved)
    chain(resolved, exported, logged, gated, published)
