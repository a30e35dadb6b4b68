"""
### promote_blue_green

Switch the gateway from the champion to a candidate model version in one move, after
watching the candidate on mirrored traffic:

pre-flight (artifact, ONNX parity, prediction-log compatibility: the switch must not break
the log's readers) → offline backtest on logged traffic → deploy the candidate as the
**idle colour**, mirrored as a shadow → **metric gate** on the shadow (errors, score
distribution and disagreement with the live colour) → **human approval** with the gate
report → **cut-over** (one route switch; both colours stay loaded) → `champion` moves →
post-switch bake against the old colour's numbers → done.

Any failure, rejection or approval timeout runs **rollback**: one switch back to the old
colour, aliases as they were, an audit tag, an alert.

It also runs by itself when train_register registers a new version and the pipeline file turns
this link on for the model (asset `flightdeck_registered_promote_blue_green`): model and version come from
the registration, the other Params from the pipeline file, and the approval gate stays.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, chain

from flightdeck.airflow import pipeline, release
from flightdeck.airflow.defaults import DEFAULT_ARGS, branch_end
from flightdeck.airflow.sensors import MetricGateSensor

DAG_ID = "promote_blue_green"

with DAG(
    dag_id=DAG_ID,
    description="Blue-green promotion: shadow gate, human approval, instant cut-over and rollback.",
    doc_md=__doc__,
    schedule=pipeline.release_schedule(DAG_ID),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["flightdeck", "release", "blue-green"],
    params=release.rollout_params("blue_green"),
) as dag:
    rollout = release.resolve_rollout("blue_green")
    checked = release.preflight(rollout)
    backtested = release.backtest(rollout)
    deployed = release.deploy(rollout)
    idle = release.set_weight.override(task_id="step_1_weight")(rollout, 1)
    shadow_gate = MetricGateSensor(task_id="step_1_gate", rollout=rollout, step_state=idle)
    chain(rollout, checked, backtested, deployed, idle, shadow_gate)

    summary = release.summarise_gates(rollout, ["step_1_gate"])
    route = release.choose_approval(rollout, summary)
    approve = release.ReleaseApprovalOperator(
        task_id="approve", rollout=rollout,
        subject="Switch {{ params.model_name }} to {{ params.model_ref }}?",
        body="{{ ti.xcom_pull(task_ids='summarise_gates')['markdown'] }}")
    skip_approval = branch_end("skip_approval")
    switched = release.promote.override(task_id="cut_over")(rollout)
    bake = MetricGateSensor(task_id="post_promotion_gate", rollout=rollout, step_state=switched, final=True,
                            bake_seconds_key="post_promotion_bake_seconds", baseline_gates=["step_1_gate"])
    done = release.finish(rollout)
    chain(shadow_gate, summary, route, [approve, skip_approval], switched, bake, done)

    undo = release.rollback()
    chain([rollout, checked, backtested, deployed, idle, shadow_gate, summary, approve, switched, bake], undo)
