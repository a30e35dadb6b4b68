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
from airflow.sdk import DAG, CronDataIntervalTimetable, chain

from flightdeck.airflow import experiments
from flightdeck.airflow.defaults import DEFAULT_ARGS, branch_end

DAG_ID = "shadow_evaluation"

with DAG(
    dag_id=DAG_ID,
    description="Daily shadow-vs-live comparison with a migration recommendation.",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    default_args=DEFAULT_ARGS,
    tags=["flightdeck", "experiments", "shadow"],
    params=experiments.shadow_params(),
) as dag:
    result = experiments.evaluate_shadow()
    chain(result, experiments.recommend(result),
          [branch_end(name) for name in ("promote_with_canary", "keep_shadowing", "reject")])
