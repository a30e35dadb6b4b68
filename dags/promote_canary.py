"""
### promote_canary

Put a candidate model version into production on the gateway, step by step:

pre-flight (artifact, ONNX parity, prediction-log compatibility) → offline backtest on
logged traffic → deploy the candidate as a 0 % canary → for each step (default 5 → 25 →
50 %): set the weight → **metric gate** (deferred: error rate and latency against the
baseline with an always-valid sequential test and a non-inferiority margin, score
distribution, minimum samples) → **human approval** with the gate reports (Browse →
Required Actions) → 100 %, alias `champion` moves to the candidate, the old champion
becomes `previous` → post-promotion bake with the same gates → done.

Any failure, rejection or approval timeout runs **rollback**: all traffic to the baseline,
aliases as they were, an audit tag on the model version, an alert. Every task is safe to
clear and re-run.

It also runs by itself when train_register registers a new version and the pipeline file turns
this link on for the model (asset `flightdeck_registered_promote_canary`): model and version come from
the registration, the other Params from the pipeline file, and the approval gate stays.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, chain

from flightdeck.airflow import pipeline, release
from flightdeck.airflow.defaults import DEFAULT_ARGS, branch_end
from flightdeck.airflow.sensors import MetricGateSensor

DAG_ID = "promote_canary"

with DAG(
    dag_id=DAG_ID,
    description="Canary promotion with metric gates, human approval and automatic rollback.",
    doc_md=__doc__,
    schedule=pipeline.release_schedule(DAG_ID),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["flightdeck", "release", "canary"],
    params=release.rollout_params("canary"),
) as dag:
    rollout = release.resolve_rollout("canary")
    checked = release.preflight(rollout)
    backtested = release.backtest(rollout)
    deployed = release.deploy(rollout)
    chain(rollout, checked, backtested, deployed)

    previous, steps = deployed, []
    for i in range(1, release.MAX_STEPS + 1):
        weight = release.set_weight.override(task_id=f"step_{i}_weight")(rollout, i)
        gate = MetricGateSensor(task_id=f"step_{i}_gate", rollout=rollout, step_state=weight,
                                final=False)
        chain(previous, weight, gate)
        previous = gate
        steps += [weight, gate]
    gate_ids = [f"step_{i}_gate" for i in range(1, release.MAX_STEPS + 1)]

    summary = release.summarise_gates(rollout, gate_ids)
    route = release.choose_approval(rollout, summary)
    approve = release.ReleaseApprovalOperator(
        task_id="approve", rollout=rollout,
        subject="Promote {{ params.model_name }} {{ params.model_ref }} to 100 %?",
        body="{{ ti.xcom_pull(task_ids='summarise_gates')['markdown'] }}")
    skip_approval = branch_end("skip_approval")
    promoted = release.promote(rollout)
    bake = MetricGateSensor(task_id="post_promotion_gate", rollout=rollout, step_state=promoted, final=True,
                            bake_seconds_key="post_promotion_bake_seconds", baseline_gates=gate_ids)
    done = release.finish(rollout)
    chain(previous, summary, route, [approve, skip_approval], promoted, bake, done)

    # The way back hangs off every step (never off the branch: a task the branch does not
    # choose is skipped whatever its trigger rule).
    undo = release.rollback()
    chain([rollout, checked, backtested, deployed, *steps, summary, approve, promoted, bake], undo)
