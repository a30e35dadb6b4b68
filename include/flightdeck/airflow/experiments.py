"""The tasks of the DAGs `experiment_analysis` and `shadow_evaluation`: thin adapters over
`flightdeck.experiments.runs`, so every step is testable without a scheduler.

The day analysed is the run's data interval (a daily interval timetable: the run after
midnight covers the day before), so a backfill re-analyses each day with the data up to it.
"""

from __future__ import annotations

import logging

from airflow.sdk import task

from flightdeck.airflow.defaults import fail_fast_on_user_error, registry

log = logging.getLogger(__name__)

PROMOTION_DAG_ID = "promote_canary"


def promote_winner():
    """Trigger the canary promotion of the winning version with the conf `analyse_experiment`
    built (the DAG renders templates as native objects, so the conf arrives as a dict)."""
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    return TriggerDagRunOperator(
        task_id="promote", trigger_dag_id=PROMOTION_DAG_ID,
        conf="{{ ti.xcom_pull(task_ids='analyse_experiment')['promotion_conf'] }}",
        trigger_run_id="experiment__{{ run_id }}", wait_for_completion=False)


def analysis_params() -> dict:
    """experiment_analysis's Params: the fields of `ExperimentAnalysisParams`."""
    from flightdeck.airflow.params import params_from_model
    from flightdeck.experiments.params import ExperimentAnalysisParams

    return params_from_model(ExperimentAnalysisParams)


def shadow_params() -> dict:
    """shadow_evaluation's Params: the fields of `ShadowEvaluationParams`."""
    from flightdeck.airflow.params import params_from_model
    from flightdeck.experiments.params import ShadowEvaluationParams

    return params_from_model(ShadowEvaluationParams)


def _label(dag_run) -> str:
    return dag_run.run_id if dag_run is not None else "manual"


@task
def load_definition(params=None, dag_run=None) -> dict:
    """Validate the experiment definition named by the Param `definition` (fails, not retried, when bad)."""
    from flightdeck.airflow.params import validated
    from flightdeck.experiments.definitions import load_definition as load
    from flightdeck.experiments.params import ExperimentAnalysisParams

    checked = validated(ExperimentAnalysisParams, params, dag_run)
    with fail_fast_on_user_error():
        definition = load(checked.definition)
    log.info("experiment %s: %s on endpoint %s, variants %s, policy %s", definition.name, definition.primary_metric,
             definition.endpoint, definition.weights, definition.policy)
    return definition.model_dump(mode="json")


@task
def analyse_experiment(definition: dict, data_interval_start=None, dag_run=None) -> dict:
    """Read the prediction log and outcomes up to the end of the run's day, test, report, log to MLflow."""
    from flightdeck.experiments.definitions import parse_definition
    from flightdeck.experiments.runs import analyse_day

    with fail_fast_on_user_error():
        result = analyse_day(parse_definition(definition), data_interval_start.date(), _label(dag_run), registry())
    log.info("report: %s", result["report"])
    if "artifact_uri" in result:
        log.info("report in MLflow: %s (run %s)", result["artifact_uri"], result["mlflow_run_id"])
    if result["srm"] and result["srm"]["p_value"] < result["srm"]["threshold"]:
        log.warning("sample-ratio mismatch: %s", result["srm"])
    return result


@task.branch
def decide(result: dict) -> str:
    """ship → trigger the promotion; stop / keep running → end here."""
    log.info("decision: %s (%s): %s", result["action"], result["status"], "; ".join(result["reasons"]))
    return {"ship": "promote", "stop": "stop"}.get(result["action"], "keep_running")


@task
def bandit_weights(definition: dict, data_interval_start=None) -> dict:
    """policy bandit: Thompson sampling → new weights on the gateway; logs P(best) per arm."""
    from flightdeck.airflow.release import gateway_url_and_token
    from flightdeck.experiments.definitions import parse_definition
    from flightdeck.experiments.runs import bandit_step
    from flightdeck.serving.client import GatewayClient

    parsed = parse_definition(definition)
    if parsed.policy != "bandit":
        log.info("policy %s: no bandit step", parsed.policy)
        return {"skipped": True}
    url, token = gateway_url_and_token()
    with fail_fast_on_user_error(), GatewayClient(url, token) as client:
        result = bandit_step(parsed, data_interval_start.date(), client, registry())
    log.info("assignment probabilities: %s; weights %s; %s", result["probability_best"], result["weights"],
             result["reason"])
    return result


@task
def evaluate_shadow(data_interval_start=None, data_interval_end=None, params=None, dag_run=None) -> dict:
    """Join live and shadow rows of the run's interval → report, MLflow, recommendation."""
    from flightdeck.airflow.params import validated
    from flightdeck.errors import ConfigError
    from flightdeck.experiments.params import ShadowEvaluationParams
    from flightdeck.experiments.runs import evaluate_shadow_window

    checked = validated(ShadowEvaluationParams, params, dag_run)
    with fail_fast_on_user_error():
        try:
            result = evaluate_shadow_window(checked.endpoint, data_interval_start, data_interval_end,
                                            checked.criteria, _label(dag_run), registry())
        except ValueError as exc:  # pydantic: bad criteria
            raise ConfigError("Param criteria", str(exc).replace("\n", " "),
                              "use the fields of flightdeck.experiments.shadow.ShadowCriteria") from None
    log.info("recommendation: %s — %s", result["recommendation"], "; ".join(result["reasons"]))
    log.info("report: %s%s", result["report"], f" (MLflow {result['artifact_uri']})" if "artifact_uri" in result else "")
    return result


@task.branch
def recommend(result: dict) -> str:
    return result["recommendation"]
