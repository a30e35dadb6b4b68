"""The tasks of the promotion DAGs (promote_canary, promote_blue_green): thin adapters over
`flightdeck.delivery`, so each step is testable without a scheduler.

The gateway is reached through the Airflow connection `flightdeck_gateway`, an http
connection whose password is an admin token of the gateway, e.g.
`AIRFLOW_CONN_FLIGHTDECK_GATEWAY='http://:TOKEN@127.0.0.1:8000'`.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Connection, TriggerRule, task
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

from flightdeck.airflow.defaults import fail_fast_on_user_error, registry
from flightdeck.airflow.notify import send_alert
from flightdeck.delivery.limits import MAX_STEPS  # noqa: F401 - the canary DAG lays out this many steps

log = logging.getLogger(__name__)

GATEWAY_CONN_ID = "flightdeck_gateway"


# ---- helpers the tasks share -------------------------------------------------------------
def _rollout(data: dict):
    from flightdeck.delivery.plan import ResolvedRollout

    return ResolvedRollout.from_dict(data)


def gateway_url_and_token() -> tuple[str, str | None]:
    """Base URL and admin token of the gateway, from the `flightdeck_gateway` connection."""
    try:
        conn = Connection.get(GATEWAY_CONN_ID)
    except AirflowNotFoundException:
        raise AirflowFailException(
            f"no Airflow connection {GATEWAY_CONN_ID!r}. Fix: define it, e.g. "
            f"AIRFLOW_CONN_{GATEWAY_CONN_ID.upper()}='http://:ADMIN_TOKEN@127.0.0.1:8000'.") from None
    scheme = conn.conn_type if conn.conn_type in ("http", "https") else "http"
    port = f":{conn.port}" if conn.port else ""
    return f"{scheme}://{conn.host}{port}", conn.password or None


def make_target(rollout):
    """The rollout's deployment target, with what reaches each system taken from Airflow
    connections: the gateway's (`flightdeck_gateway`), Kubernetes' and AWS's (`aws_conn_id`)."""
    from flightdeck.delivery.targets.factory import make_target as build

    plan = rollout.plan
    if plan.target == "kubernetes":
        from flightdeck.airflow.k8s_apply import KubernetesHookApplier

        return build(rollout, kubernetes_applier=KubernetesHookApplier)
    if plan.target == "lambda":
        return build(rollout, lambda_client=_lambda_client(plan.target_options))
    if plan.target == "ecs":
        return build(rollout, ecs_clients=_ecs_clients(plan.target_options))
    return build(rollout, gateway=gateway_url_and_token())


def _lambda_client(options: dict):
    """A boto3 Lambda client from the Airflow AWS connection, or None (boto3's default chain)."""
    if not options.get("aws_conn_id"):
        return None
    from airflow.providers.amazon.aws.hooks.lambda_function import LambdaHook

    return LambdaHook(aws_conn_id=options["aws_conn_id"], region_name=options.get("region")).conn


def _ecs_clients(options: dict):
    """boto3 ECS and ELBv2 clients from the Airflow AWS connection, or None (boto3's default chain)."""
    if not options.get("aws_conn_id"):
        return None
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    session = AwsBaseHook(aws_conn_id=options["aws_conn_id"], region_name=options.get("region")).get_session()
    return session.client("ecs"), session.client("elbv2")


def _source_config(plan) -> dict:
    from flightdeck.delivery.targets.factory import source_config

    return source_config(plan, gateway_url_and_token()[0] if plan.metrics_source == "gateway" else None)


def gate_trigger_arguments(rollout_data: dict, step_state: dict, *, final: bool, bake_seconds_key: str,
                           fixed_baseline: dict | None) -> dict:
    """The MetricGateTrigger's arguments for one step (JSON-safe)."""
    from flightdeck.delivery.release import WindowSelector

    rollout = _rollout(rollout_data)
    plan = rollout.plan
    state = step_state["state"]
    started_at = state.get("changed_at") or step_state.get("at") or time.time()
    baseline_variant, candidate_variant = step_state["variants"]
    shadowing = plan.strategy == "blue_green" and state["candidate_percent"] == 0
    selector = WindowSelector(baseline_variant=baseline_variant, baseline_version=rollout.baseline_version,
                              candidate_variant=candidate_variant, candidate_version=rollout.candidate_version,
                              candidate_role="shadow" if shadowing else "live")
    bake = getattr(plan, bake_seconds_key)
    with fail_fast_on_user_error():
        rollout.check_time_left()
    # The gate's clock starts with its step: it may run until the whole rollout's time is up.
    until_expiry = rollout.started_at + plan.max_duration_seconds - started_at
    return {"source": _source_config(plan), "selector": selector.to_dict(),
            "since": {"route_version": state.get("revision") or 0, "epoch": started_at},
            "gates": plan.gates.model_dump(mode="json"), "alpha": plan.gates.alpha_per_window(plan.gate_windows),
            "started_at": started_at, "bake_seconds": bake,
            "max_seconds": min(max(plan.max_step_seconds, bake), until_expiry),
            "final": final or bool(step_state.get("last")), "look_seconds": plan.look_seconds, "fixed_baseline": fixed_baseline}


def gate_outcome(rollout_data: dict, event: dict, task_log) -> dict:
    """Turn the trigger's event into the sensor's result: fail the task or return the report."""
    from flightdeck.delivery.gates import GateReport

    plan = _rollout(rollout_data).plan
    decision = event["decision"]
    report = GateReport.from_dict(event["report"]).to_markdown() if event.get("report") else ""
    task_log.info("gate decision: %s — %s\n%s", decision, event.get("reason"), report)
    if decision == "pass":
        return event
    if decision == "inconclusive" and plan.gates.on_inconclusive == "ask":
        return {**event, "needs_human": True}
    raise AirflowFailException(f"metric gate {decision}: {event.get('reason')}\n{report}")


# ---- tasks -------------------------------------------------------------------------------
@task
def resolve_rollout(strategy: str, params=None, dag_run=None) -> dict:
    """Validate the Params, pin baseline (champion) and candidate to versions, and take the
    model's release lock (one rollout per model at a time, across both promotion DAGs)."""
    from flightdeck.airflow.pipeline import with_asset_conf
    from flightdeck.delivery.plan import RolloutPlan
    from flightdeck.delivery.release import acquire_release_lock, resolve
    from flightdeck.delivery.targets.factory import pin_target

    # A run started by a registration takes model, version and the pipeline's Params from it.
    values = {**with_asset_conf(f"promote_{strategy}", params), **(dag_run.conf or {}), "strategy": strategy}
    with fail_fast_on_user_error():
        rollout = resolve(RolloutPlan.parse(values), registry())
        rollout = pin_target(rollout, make_target(rollout))
        acquire_release_lock(rollout, registry(), dag_run.run_id)
    log.info("rollout of %s v%s over v%s (%s, target %s)", rollout.plan.model_name, rollout.candidate_version,
             rollout.baseline_version, strategy, rollout.plan.target)
    return rollout.to_dict()


@task
def preflight(rollout_data: dict) -> dict:
    """The candidate's artifact exists, loads and keeps parity; its inputs suit the prediction log."""
    from flightdeck.config import get_settings
    from flightdeck.delivery.preflight import check_artifact, check_log_compatibility
    from flightdeck.serving.db import engine_for

    rollout = _rollout(rollout_data)
    models = registry()
    with fail_fast_on_user_error():
        candidate = check_artifact(models, rollout.plan.model_name, rollout.candidate_version)
        baseline = check_artifact(models, rollout.plan.model_name, rollout.baseline_version)
        compatibility = check_log_compatibility(engine_for(get_settings().gateway_db_url), baseline.inputs,
                                                candidate.inputs)
        compatibility.raise_for_incompatible()
    return {"candidate": candidate.to_dict(), "baseline": baseline.to_dict(),
            "log_compatibility": compatibility.to_dict()}


@task
def backtest(rollout_data: dict) -> dict:
    """Replay recent logged traffic through champion and candidate; stop if the candidate is worse."""
    from flightdeck.config import get_settings
    from flightdeck.delivery.backtest import backtest_versions
    from flightdeck.serving.db import engine_for

    rollout = _rollout(rollout_data)
    plan = rollout.plan
    with fail_fast_on_user_error():
        report = backtest_versions(registry(), engine_for(get_settings().gateway_db_url), plan.model_name,
                                   plan.endpoint, rollout.baseline_version, rollout.candidate_version,
                                   plan.backtest)
        log.info("backtest:\n%s", report.to_markdown())
        report.enforce(plan.on_backtest_insufficient)
    return report.to_dict()


def _step_result(rollout, target, state, in_plan: bool = True, last: bool = False) -> dict:
    """What a traffic task hands its gate: the state, the variant names, and whether this is the
    plan's last step (whose gate must establish non-inferiority, not only the absence of harm)."""
    return {"in_plan": in_plan, "last": last, "state": state.to_dict(),
            "variants": list(target.variant_names()), "at": time.time()}


@task
def deploy(rollout_data: dict) -> dict:
    """The candidate beside the baseline with no live traffic (idle colour / 0 % canary)."""
    rollout = _rollout(rollout_data)
    target = make_target(rollout)
    with fail_fast_on_user_error():  # e.g. an endpoint the gateway does not have: retrying cannot help
        state = target.deploy()
    return _step_result(rollout, target, state)


@task
def set_weight(rollout_data: dict, step: int) -> dict:
    """Step `step` (1-based) of the plan: the candidate's share of traffic. Re-running it is a no-op."""
    rollout = _rollout(rollout_data)
    percents = rollout.plan.step_percents
    with fail_fast_on_user_error():
        rollout.check_time_left()
    target = make_target(rollout)
    if step > len(percents):
        return _step_result(rollout, target, target.state(), in_plan=False)
    return _step_result(rollout, target, target.set_weight(percents[step - 1]), last=step == len(percents))


@task
def summarise_gates(rollout_data: dict, gate_task_ids: list[str], ti=None) -> dict:
    """The gate reports of every step, for the approver (markdown) and the branch."""
    from flightdeck.delivery.gates import GateReport

    rollout = _rollout(rollout_data)
    lines = [f"## Promote {rollout.plan.model_name} v{rollout.candidate_version} over "
             f"v{rollout.baseline_version} ({rollout.plan.strategy})", ""]
    needs_human = False
    for task_id in gate_task_ids:
        event = ti.xcom_pull(task_ids=task_id) or {}
        if event.get("decision") in (None, "not_in_plan"):
            continue
        needs_human = needs_human or bool(event.get("needs_human"))
        lines += [f"### {task_id}: {event['decision']} after {event.get('elapsed_s')} s — {event.get('reason')}",
                  GateReport.from_dict(event["report"]).to_markdown(), ""]
    return {"markdown": "\n".join(lines), "needs_human": needs_human}


@task.branch
def choose_approval(rollout_data: dict, summary: dict) -> str:
    """Ask a human unless the plan turned approval off and no gate asked for one."""
    plan = _rollout(rollout_data).plan
    if plan.require_approval or summary["needs_human"]:
        return "approve"
    return "skip_approval"


class ReleaseApprovalOperator(ApprovalOperator):
    """The human gate before 100 %: approvers and timeout come from the run's plan.

    A rejection fails the task (`fail_on_reject`), as does a timeout, so the rollback runs.
    The body carries the gate reports.
    """

    template_fields = (*ApprovalOperator.template_fields, "rollout")

    def __init__(self, *, rollout: Any, **kwargs: Any) -> None:
        kwargs.setdefault("retries", 0)  # a retry would ask again after a timeout or a reject
        super().__init__(fail_on_reject=True, **kwargs)
        self.rollout = rollout

    def execute(self, context):
        plan = _rollout(self.rollout).plan
        self.response_timeout = timedelta(minutes=plan.approval_timeout_minutes)
        if plan.approvers:
            self.assigned_users = [{"id": name, "name": name} for name in plan.approvers]
        return super().execute(context)


@task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
def promote(rollout_data: dict) -> dict:
    """All traffic to the candidate; `champion` moves to it and the old champion becomes `previous`."""
    from flightdeck.delivery.release import promote_aliases

    rollout = _rollout(rollout_data)
    with fail_fast_on_user_error():
        rollout.check_time_left()
    target = make_target(rollout)
    result = _step_result(rollout, target, target.promote())
    aliases = promote_aliases(rollout, registry())
    result["aliases"] = aliases.aliases
    if aliases.left_alone:
        result["left_alone"] = aliases.left_alone
    return result


@task
def finish(rollout_data: dict, run_id=None) -> dict:
    """Record and announce the promotion."""
    from flightdeck.delivery.release import audit, release_release_lock

    rollout = _rollout(rollout_data)
    record = audit(rollout, registry(), run_id, "promoted", "every gate passed")
    release_release_lock(rollout, registry(), run_id)
    send_alert(f"flightdeck: {rollout.plan.model_name} v{rollout.candidate_version} promoted",
               f"{rollout.plan.strategy} rollout {run_id} finished: v{rollout.candidate_version} is champion, "
               f"v{rollout.baseline_version} is previous.")
    return record


@task(trigger_rule=TriggerRule.ONE_FAILED, retries=5, retry_delay=timedelta(seconds=10))
def rollback(run_id=None, ti=None) -> dict:
    """All traffic back to the baseline, aliases as they were, an audit record and an alert.

    Runs when any step upstream failed (it hangs off every step, never off the branch).
    Retried harder than other tasks: it is the way back.
    """
    from flightdeck.delivery.release import audit, release_release_lock, restore_aliases

    rollout_data = ti.xcom_pull(task_ids="resolve_rollout")
    if not rollout_data:
        log.warning("the rollout never resolved: no traffic moved, nothing to roll back")
        return {"rolled_back": False}
    rollout = _rollout(rollout_data)
    target = make_target(rollout)
    state = target.rollback()
    models = registry()
    move = restore_aliases(rollout, models)
    aliases = move.aliases
    # Compare-and-set: what a later release changed is left alone, and the summary says so.
    left_alone = [note for note in (getattr(target, "left_alone", None), move.left_alone) if note]
    for note in left_alone:
        log.warning("rollback left alone: %s", note)
    record = audit(rollout, models, run_id, "rolled_back", "a step failed; its log says which gate and why")
    release_release_lock(rollout, models, run_id)
    send_alert(f"flightdeck: rollout of {rollout.plan.model_name} v{rollout.candidate_version} rolled back",
               f"{rollout.plan.strategy} rollout {run_id}: a step failed. All traffic is on "
               f"v{rollout.baseline_version} ({state.target} serves {state.baseline}, "
               f"{state.candidate_percent:g} % to the candidate); aliases {aliases}."
               + "".join(f" Left alone: {note}." for note in left_alone))
    return {"rolled_back": True, "state": state.to_dict(), "aliases": aliases, "audit": record,
            "left_alone": left_alone}


def rollout_params(strategy: str) -> dict:
    """The Params of a promotion DAG: the fields of `RolloutPlan` (less the strategy, which the
    DAG fixes, and the other strategy's own field), checked again, fully, by `resolve_rollout`."""
    from flightdeck.airflow.params import params_from_model
    from flightdeck.config import get_settings
    from flightdeck.delivery.plan import RolloutPlan

    other = "shadow_percent" if strategy == "canary" else "steps"
    return params_from_model(RolloutPlan, {"model_name": get_settings().model_name}, exclude=("strategy", other))
