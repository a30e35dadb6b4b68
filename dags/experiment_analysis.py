"""
### experiment_analysis

Daily analysis of an A/B test (or bandit) defined in `include/config/experiments/<definition>`:
load and validate the definition → read the gateway's prediction log and outcomes up to the
end of the run's day → sample-ratio check → fixed-horizon or always-valid (mSPRT) tests,
Holm over guardrails, Benjamini-Hochberg over secondary metrics → power reached → an HTML
report (lift with CIs over time, cumulative assignment and SRM, power; every test) under
`$FLIGHTDECK_HOME/reports/experiments/<name>/ds=…/` and as an MLflow artifact (the task log
prints both) → a decision. **ship** triggers `promote_canary` for the winning version;
**stop** and **keep_running** end the run. With `policy: bandit`, `bandit_weights` moves
the gateway's weights (Thompson sampling) and logs the assignment probabilities.

Backfill: `airflow backfill create --dag-id experiment_analysis --from-date D1 --to-date D7`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable, chain

from flightdeck.airflow import experiments
from flightdeck.airflow.defaults import DEFAULT_ARGS, branch_end

DAG_ID = "experiment_analysis"

with DAG(
    dag_id=DAG_ID,
    description="Daily A/B / bandit analysis: SRM, sequential tests, report, ship / stop / keep running.",
    doc_md=__doc__,
    # The run after midnight covers the day before: data_interval_start is the analysed day.
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,  # the promotion conf is pulled from XCom as a dict
    max_active_runs=1,  # each look carries the always-valid p-value of the day before
    default_args=DEFAULT_ARGS,
    tags=["flightdeck", "experiments"],
    params=experiments.analysis_params(),
) as dag:
    definition = experiments.load_definition()
    bandit = experiments.bandit_weights(definition)
    result = experiments.analyse_experiment(definition)
    branch = experiments.decide(result)
    chain(definition, bandit, result, branch,
          [experiments.promote_winner(), branch_end("stop"), branch_end("keep_running")])
