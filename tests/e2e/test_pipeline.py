"""The self-running pipeline on the session's real scheduler, with one trigger only: batch_score
scores a drifted day of a model of this test's own → its drift verdict requests a retrain →
train_register starts by itself (asset-triggered) on the sliding window and registers a new
version → the registration starts edge_export, serverless_package and promote_blue_green by
themselves → the promotion parks at its human approval, which the test rejects through the REST
API (the rollback then restores route and aliases), so nothing is left waiting.

Everything is the test's own: the model (PIPELINE_MODEL, neither the DAGs' default nor the
release world's), its gateway endpoint, its raw days (June 2026), its pipeline file entry and
its runs. The DAGs it needs are unpaused for it and paused again afterwards only if they were
paused before. Lambda is not reachable here (no AWS, and packaging fetches Lambda's wheels), so
serverless_package is checked to have started by itself and is then ended as failed; edge_export
is checked to have resolved the new version, then ended too (its distillation would only slow
the other tests on the same machine). Both are proven in full by their own DAG tests.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import pytest
import yaml

from flightdeck.config import Settings
from flightdeck.data.generator import write_partitions
from flightdeck.devtools.airflow_api import AirflowRest
from tests.support.airflow import REPO
from tests.support.poll import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

PIPELINE_MODEL = "flightdeck-e2e-pipeline"
ENDPOINT = "pipeline-e2e"
DRIFTED = date(2026, 6, 15)
CHAMPION_WINDOW = (date(2026, 5, 1), date(2026, 5, 7))
ROWS_PER_DAY = 300
DAGS = ("batch_score", "train_register", "edge_export", "serverless_package", "promote_blue_green")
RELEASES = ("edge_export", "serverless_package", "promote_blue_green")
FINISHED = {"success", "failed"}
# The promotion gets no traffic on its endpoint: its shadow gate is inconclusive after 20 s and,
# as the pipeline file says, asks a human instead of rolling back.
PROMOTION = {"endpoint": ENDPOINT, "bake_seconds": 0, "max_step_seconds": 20, "look_seconds": 1,
             "post_promotion_bake_seconds": 0, "require_approval": True, "approval_timeout_minutes": 15,
             "gates": {"on_inconclusive": "ask"}}
LINKS = {"retrain": {"on_batch_drift": True, "window_days": 14, "label_delay_days": 30},
         "on_registered": {"edge_export": {"enabled": True, "conf": {"publish_format": "onnx_int8"}},
                           "serverless_package": {"enabled": True},
                           "promotion": {"enabled": True, "strategy": "blue_green", "conf": PROMOTION}}}

# A champion that ranks no better than chance (trained on shuffled labels), through the training
# stages themselves, so it has what batch monitoring and the promotion's pre-flight read (reference
# profile, golden scores): any honest retrain beats it, whatever the data's noise.
WEAK_CHAMPION = """
import sys
from datetime import date
from flightdeck.registry import Registry
from flightdeck.training import pipeline as stages
from flightdeck.training.params import TrainParams
from flightdeck.training.train import fit_pipeline
from flightdeck.data.schema import LABEL
import joblib

params = TrainParams(model_name=sys.argv[1], window_start=date.fromisoformat(sys.argv[2]),
                     window_end=date.fromisoformat(sys.argv[3]), labels_as_of=date.fromisoformat(sys.argv[4]))
registry = Registry.from_settings()
staging = stages.staging_dir("pipeline-e2e-champion")
_, rows, _ = stages._split(params)
rows = rows.assign(**{LABEL: rows[LABEL].sample(frac=1.0, random_state=0).to_numpy()})
joblib.dump(fit_pipeline(rows, params.model_type, params.seed), staging / stages.PIPELINE_FILE)
validation = stages.validate_window(params)
evaluation = stages.evaluate(params, staging, registry)
run = stages.log_run(params, validation, evaluation, registry, airflow_run_id="pipeline-e2e")
exported = stages.export_onnx(params, staging, registry, run)
print(stages.register(params, registry, run, exported["model_uri"], validation["training_key"], "weak champion"))
"""


def _runs(airflow, dag_id: str) -> list[dict]:
    return airflow.query("SELECT run_id, run_type, state FROM dag_run WHERE dag_id = :dag_id "
                         "ORDER BY id", dag_id=dag_id)


def _new_runs(airflow, dag_id: str, before: set[str]) -> list[dict]:
    return [run for run in _runs(airflow, dag_id) if run["run_id"] not in before]


@pytest.fixture(scope="module")
def world(airflow, release_world):
    """Raw days, the weak champion, the endpoint and the pipeline file entry of PIPELINE_MODEL;
    the DAGs unpaused; afterwards the entry, the endpoint and the pauses undone."""
    settings = Settings(home=airflow.home)
    day_before = DRIFTED - timedelta(days=1)
    write_partitions(settings.raw_dir, CHAMPION_WINDOW[0], day_before, rows_per_day=ROWS_PER_DAY, seed=settings.seed)
    write_partitions(settings.raw_dir, DRIFTED, DRIFTED, scenario="feature_drift", rows_per_day=ROWS_PER_DAY,
                     seed=settings.seed)
    # A script file, not `python -c`: pyspark (imported by MLflow on the way) ends a process whose
    # main module has no file with exit status 0, as if it ran its own doctests.
    script = airflow.root / "weak_champion.py"
    script.write_text(WEAK_CHAMPION)
    done = subprocess.run([sys.executable, str(script), PIPELINE_MODEL, *(d.isoformat() for d in CHAMPION_WINDOW),
                           DRIFTED.isoformat()], env=airflow.env, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "'created': True" in done.stdout, done.stdout[-2000:] + done.stderr[-3000:]
    with release_world.client() as gateway:
        gateway.update_endpoint(ENDPOINT, lambda _: {"policy": "single", "variants": {
            "champion": {"model": PIPELINE_MODEL, "alias": "champion"}}}, create=True, wait=True,
            comment="pipeline e2e")

    config = settings.pipeline_file
    assert not config.exists(), f"{config} is another test's: this one must not overwrite it"
    config.write_text(yaml.safe_dump({"models": {PIPELINE_MODEL: LINKS}}))
    api = AirflowRest(airflow.url)
    paused = {dag_id for dag_id in DAGS if api.call("GET", f"/dags/{dag_id}")["is_paused"]}
    for dag_id in paused:
        airflow.set_paused(dag_id, False)
    try:
        yield settings, api
    finally:
        config.unlink(missing_ok=True)
        for dag_id in paused:
            airflow.set_paused(dag_id, True)
        with release_world.client() as gateway:
            stored = gateway.routes()
            document = stored["document"]
            document["endpoints"].pop(ENDPOINT, None)
            gateway.replace_routes(document, comment="pipeline e2e done", expected_version=stored["version"])
        api.close()


def test_a_drifted_day_retrains_registers_and_parks_a_promotion_at_its_approval(world, airflow):
    settings, api = world
    before = {dag_id: {run["run_id"] for run in _runs(airflow, dag_id)} for dag_id in (*DAGS,)}
    registry_versions = _versions(airflow)
    assert registry_versions == ["1"], registry_versions

    # The only trigger: batch_score for the drifted day, for this test's model.
    batch_run = api.call("POST", "/dags/batch_score/dagRuns", json={
        "logical_date": f"{DRIFTED.isoformat()}T00:00:00Z", "conf": {"model_name": PIPELINE_MODEL}})["dag_run_id"]
    eventually(lambda: api.run_state("batch_score", batch_run) in FINISHED, 400, 2, "batch_score to finish")
    batch_states = api.task_states("batch_score", batch_run)
    assert api.run_state("batch_score", batch_run) == "success", batch_states
    request = api.xcom("batch_score", batch_run, "request_retrain")
    assert request["requested"] is True, request
    window = request["window"]
    assert window == {"window_start": "2026-05-03", "window_end": "2026-05-16", "labels_as_of": "2026-06-15"}

    # train_register starts by itself on the request's window and registers version 2.
    (train,) = airflow.wait_until(lambda: _new_runs(airflow, "train_register", before["train_register"]), 120,
                                  "an asset-triggered train_register run")
    assert train["run_type"] == "asset_triggered", train
    eventually(lambda: api.run_state("train_register", train["run_id"]) in FINISHED, 400, 2,
               "train_register to finish")
    train_states = api.task_states("train_register", train["run_id"])
    assert api.run_state("train_register", train["run_id"]) == "success", train_states
    checked = api.xcom("train_register", train["run_id"], "check_params")
    assert {key: checked[key] for key in window} == window and checked["model_name"] == PIPELINE_MODEL
    assert _versions(airflow) == ["1", "2"]
    assert api.xcom("train_register", train["run_id"], "request_releases")["requested"] == sorted(RELEASES)

    # The registration starts the three release DAGs by themselves.
    started = airflow.wait_until(lambda: (lambda runs: runs if all(runs.values()) else None)(
        {dag_id: _new_runs(airflow, dag_id, before[dag_id]) for dag_id in RELEASES}), 120,
        "asset-triggered edge_export, serverless_package and promote_blue_green runs")
    assert all(runs[0]["run_type"] == "asset_triggered" for runs in started.values()), started
    edge_run, lambda_run, promotion_run = (started[dag_id][0]["run_id"] for dag_id in RELEASES)
    parked_since = None
    try:
        # The promotion of version 2 over the champion parks at its human approval.
        def parked():
            states = api.task_states("promote_blue_green", promotion_run)
            assert api.run_state("promote_blue_green", promotion_run) not in FINISHED, states
            return api.pending_approval("promote_blue_green", promotion_run) if states.get("approve") == \
                "awaiting_input" else None
        approval = eventually(parked, 300, 2, "the promotion's approval")
        parked_since = datetime.now(UTC)
        assert "v2 over v1" in approval["body"], approval["body"][:500]
        rollout = api.xcom("promote_blue_green", promotion_run, "resolve_rollout")
        assert (rollout["plan"]["model_name"], rollout["plan"]["endpoint"]) == (PIPELINE_MODEL, ENDPOINT)

        # edge_export and serverless_package resolved the same version from the registration.
        edge = eventually(lambda: api.xcom("edge_export", edge_run, "resolve_export"), 120, 2, "edge_export's resolve")
        assert (edge["model_name"], str(edge["version"]), edge["publish_format"]) == (PIPELINE_MODEL, "2", "onnx_int8")
    finally:
        # Nothing left waiting: the approval rejected (the rollback restores route and aliases),
        # the Lambda and edge runs ended.
        if api.pending_approval("promote_blue_green", promotion_run) is not None:
            api.respond("promote_blue_green", promotion_run, "Reject", parked_since=parked_since)
        for dag_id, run_id in (("serverless_package", lambda_run), ("edge_export", edge_run)):
            if api.run_state(dag_id, run_id) not in FINISHED:
                api.call("PATCH", api.run_path(dag_id, run_id), json={"state": "failed"})
        eventually(lambda: api.run_state("promote_blue_green", promotion_run) in FINISHED, 300, 2,
                   "the rejected promotion to roll back")
    states = api.task_states("promote_blue_green", promotion_run)
    assert states["approve"] == "failed" and states["rollback"] == "success", states
    assert _aliases(airflow)["champion"] == "1"


def _registry(airflow):
    from flightdeck.registry import Registry

    return Registry.from_settings(Settings(home=airflow.home))


def _versions(airflow) -> list[str]:
    found = _registry(airflow).client.search_model_versions(f"name = '{PIPELINE_MODEL}'")
    return sorted((str(v.version) for v in found), key=int)


def _aliases(airflow) -> dict:
    return _registry(airflow).aliases(PIPELINE_MODEL)
