"""Both experiment DAGs end to end with dag.test() on SQLite Airflow, over traffic sent through
the real gateway (sticky A/B endpoint with a shadow, PostgreSQL prediction log, real MLflow)
and outcomes from the data generator's labels."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from flightdeck.data.schema import LABEL
from flightdeck.serving.client import GatewayClient
from tests.support.gateway import TOKEN, gateway_process
from tests.support.models import FEATURES
from tests.support.release_world import labelled_rows, register_versions
from tests.support.services import new_database

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

ENDPOINT = "credit-experiment"
# Control a = version 3 (scores shifted upwards: a worse log loss), treatment b = version 1,
# and version 2 mirrored as a shadow of every request.
ROUTES = {"endpoints": {ENDPOINT: {
    "policy": "ab", "salt": "experiment-test",
    "variants": {"a": {"version": "3"}, "b": {"version": "1"}, "shadow": {"version": "2"}},
    "weights": {"a": 50, "b": 50}, "shadow": {"variant": "shadow", "percent": 100}}}}
UNITS = 1200


@pytest.fixture(scope="module")
def traffic(tmp_path_factory, postgres_admin):
    home = tmp_path_factory.mktemp("experiments")
    register_versions(home)
    rows = labelled_rows()
    with new_database(postgres_admin) as url, gateway_process(home, url, ROUTES) as (base_url, _):
        with GatewayClient(base_url, TOKEN) as client:
            outcomes = []
            for i in range(UNITS):
                row = rows.iloc[i % len(rows)]
                answer = client.invocations([row[FEATURES].to_dict()], endpoint=ENDPOINT, unit_id=f"customer-{i}")
                outcomes.append({"request_id": answer["request_id"], "label": float(row[LABEL])})
            client.record_outcomes(outcomes)
            status = client._call("GET", "/admin/status")
        yield {"home": home, "url": url, "base_url": base_url, "status": status}


def _env(traffic, definitions: Path) -> dict:
    host = traffic["base_url"].removeprefix("http://")
    return {"FLIGHTDECK_HOME": str(traffic["home"]), "FLIGHTDECK_GATEWAY_DATABASE_URL": traffic["url"],
            "AIRFLOW_CONN_FLIGHTDECK_GATEWAY": f"http://:{TOKEN}@{host}",
            "FLIGHTDECK_EXPERIMENTS_DIR": str(definitions)}


def test_experiment_analysis_ships_the_better_model_and_triggers_the_promotion(sqlite_sandbox, traffic, tmp_path):
    today = datetime.now(UTC).date()  # dag.test(D+1 00:00) analyses the interval [D, D+1)
    definition = yaml.safe_load(Path("include/config/experiments/credit_ab.yaml").read_text())
    # Version 1 approves far more applicants than the shifted version 3, so its default rate among the
    # approved is higher: that guardrail would (rightly) stop this test; latency stays the guardrail here.
    definition.update(endpoint=ENDPOINT, start_date=today.isoformat(), promotion={"endpoint": "default"},
                      guardrails=[{"metric": "latency_ms", "tolerance": 5}],
                      variants={"a": {"version": "3", "weight": 0.5}, "b": {"version": "1", "weight": 0.5}})
    (tmp_path / "it.yaml").write_text(yaml.safe_dump(definition))
    env = _env(traffic, tmp_path)
    done = sqlite_sandbox.run(str(Path(sys.executable).with_name("airflow")), "dags", "reserialize", env=env,
                              timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = sqlite_sandbox.dag_test("experiment_analysis", {"definition": "it.yaml"}, f"{today + timedelta(days=1)}T00:00:00+00:00",
                                      env=env, timeout=300)
    tasks, log = outcome["tasks"], outcome["log"]
    assert outcome["state"] == "success", log[-6000:]
    assert tasks["promote"] == "success" and tasks["stop"] == tasks["keep_running"] == "skipped", tasks
    report = Path(re.search(r"report: (\S+index\.html)", log).group(1))
    facts = json.loads((report.parent / "report.json").read_text())
    assert facts["decision"]["action"] == "ship" and facts["decision"]["ship_variant"] == "b"
    assert facts["srm"]["p_value"] > facts["srm"]["threshold"] and sum(facts["units"].values()) == UNITS
    html = report.read_text()
    assert html.count("data:image/png;base64,") == 3 and "Every test" in html and "latency_ms" in html
    assert "report in MLflow:" in log and "index.html" in log
    assert report.is_relative_to(traffic["home"] / "reports" / "experiments")


def test_shadow_evaluation_recommends_from_the_paired_rows(sqlite_sandbox, traffic):
    today = datetime.now(UTC).date()  # dag.test(D+1 00:00) analyses the interval [D, D+1)
    outcome = sqlite_sandbox.dag_test("shadow_evaluation", {"endpoint": ENDPOINT, "criteria": {"min_pairs": 200}},
                                      f"{today + timedelta(days=1)}T00:00:00+00:00", env=_env(traffic, Path(".")), timeout=300)
    tasks, log = outcome["tasks"], outcome["log"]
    assert outcome["state"] == "success", log[-6000:]
    report = Path(re.search(r"report: (\S+index\.html)", log).group(1))
    facts = json.loads((report.parent / "report.json").read_text())
    chosen = facts["recommendation"]
    assert tasks[chosen] == "success" and sum(s == "skipped" for s in tasks.values()) == 2
    assert facts["pairs"] >= UNITS * 0.9 and facts["shadow_variant"] == "shadow"
    # the shadow (v2) predicts outcomes better than the live mix, half of which is the shifted v3
    assert chosen == "promote_with_canary", facts["reasons"]
    assert "data:image/png;base64," in report.read_text()


def test_a_bandit_look_moves_the_gateway_weights_towards_the_better_arm(traffic, tmp_path, monkeypatch):
    """The DAG's `bandit_weights` task in process (a thin wrapper over `runs.bandit_step`): version 1
    (b) approves far more applicants than the shifted version 3 (a), so with approval as reward the
    bandit moves traffic to b, writes it to the live route table and records the probabilities."""
    from flightdeck.config import get_settings
    from flightdeck.experiments.definitions import parse_definition
    from flightdeck.experiments.runs import bandit_step

    today = datetime.now(UTC).date()
    monkeypatch.setenv("FLIGHTDECK_HOME", str(traffic["home"]))
    monkeypatch.setenv("FLIGHTDECK_GATEWAY_DATABASE_URL", traffic["url"])
    get_settings.cache_clear()
    definition = parse_definition({
        "name": "it-bandit", "endpoint": ENDPOINT, "unit": "unit_id", "control": "a",
        "variants": {"a": {"version": "3", "weight": 0.5}, "b": {"version": "1", "weight": 0.5}},
        "primary_metric": "approval_rate", "minimum_detectable_effect": 0.02, "start_date": today.isoformat(),
        "max_duration_days": 14, "policy": "bandit",
        "bandit": {"floor": 0.05, "min_units": 100, "top_two_beta": 0.8, "seed": 3}})
    try:
        with GatewayClient(traffic["base_url"], TOKEN) as client:
            before = client.routes()
            result = bandit_step(definition, today, client)
            after = client.routes()
            history = client.history(limit=1)
    finally:
        get_settings.cache_clear()
    weights = after["document"]["endpoints"][ENDPOINT]["weights"]
    assert result["moved"] and result["route_version"] == after["version"] == before["version"] + 1
    assert weights["b"] > 0.7 and weights["a"] >= 0.05 and abs(sum(weights.values()) - 1) < 1e-9
    assert result["probability_best"]["b"] > 0.99
    assert history[0]["comment"].startswith("thompson-bandit:")
    recorded = json.loads(Path(result["assignment_file"]).read_text())
    assert recorded["weights"] == pytest.approx(weights) and recorded["trials"]["a"] + recorded["trials"]["b"] == UNITS
