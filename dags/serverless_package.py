"""
### serverless_package

Ship a registered model version to AWS Lambda:

package (handler + ONNX Runtime + the model; fails with the measured size over Lambda's
50 MB zipped / 250 MB unzipped limits) → **verify** in a fresh Python process (API Gateway
HTTP API v2 and direct events, cold start and warm latency, scores equal to the gateway's)
→ deploy (create or update the function, publish a version, point the alias — or send
`canary_percent` % to it through a weighted alias) → CloudWatch alarms on errors and p99
duration. A canary started here is taken further by `promote_canary` with `target: lambda`.

It also runs by itself when train_register registers a new version and the pipeline file turns
this link on for the model (asset `flightdeck_registered_serverless_package`): model and version come from
the registration, the other Params from the pipeline file.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, chain

from flightdeck.airflow import pipeline, serverless
from flightdeck.airflow.defaults import DEFAULT_ARGS

DAG_ID = "serverless_package"

with DAG(
    dag_id=DAG_ID,
    description="Package, verify and deploy a model version to AWS Lambda behind an alias.",
    doc_md=__doc__,
    schedule=pipeline.release_schedule(DAG_ID),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["flightdeck", "serverless", "lambda"],
    params=serverless.serverless_params(),
) as dag:
    built = serverless.package()
    verified = serverless.verify(built)
    deployed = serverless.deploy(built, verified)
    chain(built, verified, deployed, serverless.alarms(deployed, verified))
