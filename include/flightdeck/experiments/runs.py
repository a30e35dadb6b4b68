"""One look at an experiment or a shadow, end to end: read the log → analyse → report → MLflow.

What the DAGs `experiment_analysis` and `shadow_evaluation` and the CLI call; no Airflow here.
Reports go under `Settings.reports_dir` (`experiments/<name>/ds=…/index.html`,
`shadow/<endpoint>/ds=…/index.html`) and the same folder is logged as artifacts of an MLflow run
in the experiment `<experiment_name>-experiments`.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from flightdeck.config import get_settings
from flightdeck.experiments.definitions import ExperimentDefinition, load_definition

log = logging.getLogger(__name__)

MLFLOW_SUFFIX = "-experiments"


def _engine():
    from flightdeck.serving.db import engine_for

    return engine_for(get_settings().gateway_db_url)


def _log_to_mlflow(registry, key: str, run_name: str, params: dict, metrics: dict, tags: dict,
                   report: Path) -> dict:
    """Log the report folder as artifacts of a run; return its id and the report's artifact URI."""
    settings = get_settings()
    run_id = registry.log_run(key, params, {k: float(v) for k, v in metrics.items() if v is not None},
                              tags, run_name=run_name, experiment_name=settings.experiment_name + MLFLOW_SUFFIX,
                              artifact_dir=report.parent)
    artifact_uri = registry.client.get_run(run_id).info.artifact_uri.rstrip("/") + "/" + report.name
    return {"mlflow_run_id": run_id, "artifact_uri": artifact_uri}


def analyse_day(definition: ExperimentDefinition | str, ds: date | str, run_label: str = "manual",
                registry=None) -> dict:
    """Analyse `definition` with everything logged up to the end of day `ds` (UTC), write the
    report and log it to MLflow. Returns the decision, the report path and the artifact URI."""
    from flightdeck.experiments.analysis import analyse
    from flightdeck.experiments.metrics import read_experiment
    from flightdeck.experiments.report import render_experiment_report

    settings = get_settings()
    definition = definition if isinstance(definition, ExperimentDefinition) else load_definition(definition)
    as_of = date.fromisoformat(ds) if isinstance(ds, str) else ds
    data = read_experiment(_engine(), definition.endpoint, list(definition.variants), definition.start_date,
                           max(as_of, definition.start_date), settings.decision_threshold, definition.unit,
                           definition.cuped.pre_period_days if definition.cuped else None)
    history = None
    if definition.policy == "bandit":  # the SRM check needs the weights in force for each unit
        from flightdeck.experiments.analysis import weight_history_from_routes

        versions = set() if data.assignments is None else {int(v) for v in data.assignments["route_version"]}
        history = weight_history_from_routes(data.assignments, route_weights(_engine(), definition.endpoint, versions),
                                             list(definition.variants))
    analysis = analyse(definition, data, as_of, weight_history=history)
    out_dir = settings.reports_dir / "experiments" / definition.name
    report = render_experiment_report(out_dir, analysis, extra={"run": run_label})
    decision = analysis.decision
    primary = [r for r in analysis.results if r.role == "primary" and r.comparison is not None]
    metrics = {"units_total": sum(analysis.units.values()), "day_index": analysis.day_index}
    metrics.update({f"units_{v}": n for v, n in analysis.units.items()})
    if analysis.srm is not None:
        metrics["srm_p_value"] = analysis.srm.p_value
    for r in primary:
        metrics[f"{r.metric}_difference_{r.treatment}"] = r.comparison.difference
        metrics[f"{r.metric}_p_value_{r.treatment}"] = r.decision_p_value
    result = {"experiment": definition.name, "ds": as_of.isoformat(), "action": decision.action,
              "status": decision.status, "reasons": decision.reasons, "ship_variant": decision.ship_variant,
              "srm": analysis.srm.to_dict() if analysis.srm else None, "srm_note": analysis.srm_note,
              "units": analysis.units,
              "report": str(report)}
    if registry is not None:
        result.update(_log_to_mlflow(
            registry, f"experiment:{definition.name}:{as_of}:{run_label}", f"{definition.name}-{as_of}",
            {"experiment": definition.name, "ds": as_of.isoformat(), "policy": definition.policy,
             "primary_metric": definition.primary_metric}, metrics,
            {"flightdeck.experiment": definition.name, "flightdeck.ds": as_of.isoformat(),
             "flightdeck.decision": decision.action}, report))
    if decision.action == "ship":
        result["promotion_conf"] = promotion_conf(definition, decision.ship_variant,
                                                  data.model_versions.get(decision.ship_variant, []))
    log.info("experiment %s on %s: %s (%s) — %s. Report: %s%s", definition.name, as_of, decision.action,
             decision.status, "; ".join(decision.reasons), report,
             f" (MLflow artifact {result['artifact_uri']})" if "artifact_uri" in result else "")
    return result


def route_weights(engine, endpoint: str, versions) -> dict[int, dict[str, float] | None]:
    """`endpoint`'s traffic weights in each of the route-table `versions` (the gateway's route
    history); None for a version that is not stored, lacks the endpoint, or does not split by
    weights (a policy other than `ab` / `canary`)."""
    from flightdeck.serving.store import RouteStore

    store = RouteStore(engine)
    out: dict[int, dict[str, float] | None] = {}
    for version in sorted(versions):
        stored = store.get(int(version))
        spec = (stored.document.get("endpoints") or {}).get(endpoint) if stored is not None else None
        weighted = isinstance(spec, dict) and spec.get("policy") in ("ab", "canary") and spec.get("weights")
        out[int(version)] = {str(k): float(w) for k, w in spec["weights"].items()} if weighted else None
    return out


def promotion_conf(definition: ExperimentDefinition, variant: str, observed_versions: list[str]) -> dict:
    """The `promote_canary` run conf that ships `variant`: its model version (the one that was
    measured when the log shows exactly one, else its alias or number) plus the definition's
    `promotion` Params (e.g. the production endpoint and steps)."""
    spec = definition.variants[variant]
    candidate = observed_versions[0] if len(observed_versions) == 1 else spec.ref
    conf = {"model_ref": str(candidate), **definition.promotion}
    if spec.model or definition.model_name:
        conf["model_name"] = spec.model or definition.model_name
    return conf


def bandit_step(definition: ExperimentDefinition | str, ds: date | str, client, registry=None) -> dict:
    """Thompson sampling on the experiment's data up to `ds`: new weights written to the
    gateway's route table (when every arm has its minimum of units) and P(best) per arm."""
    import json

    from flightdeck.experiments.analysis import bandit_counts
    from flightdeck.experiments.bandit import ThompsonBandit, apply_weights
    from flightdeck.experiments.metrics import read_experiment

    settings = get_settings()
    definition = definition if isinstance(definition, ExperimentDefinition) else load_definition(definition)
    as_of = date.fromisoformat(ds) if isinstance(ds, str) else ds
    data = read_experiment(_engine(), definition.endpoint, list(definition.variants), definition.start_date,
                           max(as_of, definition.start_date), settings.decision_threshold, definition.unit)
    successes, trials = bandit_counts(definition, data)
    routes = client.routes()["document"]["endpoints"].get(definition.endpoint, {})
    current = routes.get("weights") or definition.weights
    b = definition.bandit_settings
    bandit = ThompsonBandit(list(definition.variants), floor=b.floor, min_units=b.min_units,
                            top_two_beta=b.top_two_beta, seed=b.seed)
    decision = bandit.decide(successes, trials, current)
    version = apply_weights(client, definition.endpoint, decision,
                            author_comment=f"experiment {definition.name}, data up to {as_of}")
    result = {"experiment": definition.name, "ds": as_of.isoformat(), "successes": successes, "trials": trials,
              **decision.to_dict(), "route_version": version}
    out = settings.reports_dir / "experiments" / definition.name / "bandit"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"ds={as_of}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    result["assignment_file"] = str(path)
    if registry is not None:
        key = f"bandit:{definition.name}:{as_of}:{version}"
        run_id = registry.log_run(key, {"experiment": definition.name, "ds": as_of.isoformat()},
                                  {f"p_best_{a}": p for a, p in decision.probability_best.items()}
                                  | {f"weight_{a}": w for a, w in decision.weights.items()},
                                  {"flightdeck.experiment": definition.name}, run_name=f"{definition.name}-bandit-{as_of}",
                                  experiment_name=settings.experiment_name + MLFLOW_SUFFIX)
        registry.log_json(run_id, result, f"bandit/ds={as_of}.json")
        result["mlflow_run_id"] = run_id
    log.info("bandit %s on %s: P(best) %s → weights %s (%s); route version %s. Assignment: %s", definition.name,
             as_of, {a: round(p, 4) for a, p in decision.probability_best.items()},
             {a: round(w, 4) for a, w in decision.weights.items()}, decision.reason, version, path)
    return result


def evaluate_shadow_window(endpoint: str, start: datetime, end: datetime, criteria: dict | None = None,
                           run_label: str = "manual", registry=None) -> dict:
    """Shadow evaluation of `endpoint` on rows logged in [start, end): report + MLflow + recommendation."""
    from flightdeck.experiments.shadow import (
        ShadowCriteria,
        evaluate_shadow,
        read_pairs,
        render_shadow_report,
    )

    settings = get_settings()
    rules = ShadowCriteria.model_validate(criteria or {})
    evaluation = evaluate_shadow(read_pairs(_engine(), endpoint, start, end), endpoint, start, end,
                                 settings.decision_threshold, rules)
    ds = (end - timedelta(microseconds=1)).date().isoformat()
    report = render_shadow_report(settings.reports_dir / "shadow" / endpoint, evaluation, ds,
                                  extra={"run": run_label})
    result = {"endpoint": endpoint, "ds": ds, "recommendation": evaluation.recommendation,
              "reasons": evaluation.reasons, "pairs": evaluation.pairs, "report": str(report),
              "agreement": evaluation.agreement.to_dict() if evaluation.agreement else None}
    if registry is not None:
        metrics = {"pairs": evaluation.pairs, "labelled_pairs": evaluation.labelled_pairs}
        for name in ("agreement", "score_difference", "latency_overhead_ms", "log_loss_difference"):
            interval = getattr(evaluation, name)
            if interval is not None:
                metrics[name] = interval.estimate
        result.update(_log_to_mlflow(registry, f"shadow:{endpoint}:{ds}:{run_label}", f"shadow-{endpoint}-{ds}",
                                     {"endpoint": endpoint, "ds": ds}, metrics,
                                     {"flightdeck.shadow_endpoint": endpoint,
                                      "flightdeck.recommendation": evaluation.recommendation}, report))
    log.info("shadow evaluation of %s on %s: %s — %s. Report: %s%s", endpoint, ds, evaluation.recommendation,
             "; ".join(evaluation.reasons), report,
             f" (MLflow artifact {result['artifact_uri']})" if "artifact_uri" in result else "")
    return result


def day_window(ds: date) -> tuple[datetime, datetime]:
    """[ds 00:00, ds+1 00:00) in UTC."""
    start = datetime.combine(ds, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)
