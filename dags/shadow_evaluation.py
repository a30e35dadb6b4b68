"""
### shadow_evaluation

Daily evaluation of the shadow (mirrored) model on a gateway endpoint: join the day's live and
shadow predictions by request id and row → agreement at the decision threshold, score
difference with a confidence interval, latency overhead, disagreement by feature segment, the
most disagreeing examples, log loss on labelled rows → an HTML report under
`$FLIGHTDECK_HOME/reports/shadow/<endpoint>/ds=…/` and in MLflow → a recommendation:
**promote_with_canary**, **keep_shadowing** or **reject** (one end task each, to see at a glance).

Backfill: `airflow backfill create --dag-id shadow_evaluation --from-date D1 --to-date D7`.
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, CronDataIntervalTimetable, Param, chain

from flightdeck.airflow import experiments as x
from flightdeck.airflow.defaults import DEFAULT_ARGS

with DAG(
    dag_id="shadow_evaluation",
    description="Daily shadow-vs-live comparison with a migration recommendation.",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    default_args=DEFAULT_ARGS,
    tags=["flightdeck", "experiments", "shadow"],
    params={
        "endpoint": Param("credit", type="string", description="Gateway endpoint with a shadow variant."),
        "criteria": Param({}, type="object", description="Recommendation thresholds "
                          "(flightdeck.experiments.shadow.ShadowCriteria): min_pairs, max_disagreement, "
                          "max_latency_overhead_ms, min_labelled_pairs, alpha, …"),
    },
) as dag:
    result = x.evaluate_shadow()
    chain(result, x.recommend(result), [EmptyOperator(task_id=name) for name in
                                        ("promote_with_canary", "keep_shadowing", "reject")])
