"""The promotion tasks on a Lambda target, run in order against a moto server over loopback
HTTP, a real MLflow registry and a loopback webhook for the alert.

Each task builds its target afresh, as Airflow runs each in its own process: what one task
learnt reaches the next only through the XComs, as here.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from flightdeck.airflow import release
from flightdeck.registry import CHALLENGER, CHAMPION, PREVIOUS, Registry
from tests.integration.delivery.test_lambda_target import lambda_zip

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FUNCTION = "flightdeck-scorer"
MODEL = "credit"


class XComs:
    """The run's XComs as the tasks read them (`ti.xcom_pull(task_ids=...)`), JSON round-tripped."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}

    def push(self, task_id: str, value):
        self.values[task_id] = json.loads(json.dumps(value))
        return self.values[task_id]

    def xcom_pull(self, task_ids: str):
        return self.values.get(task_ids)


@pytest.fixture
def lambda_function(moto_server):
    """Versions 1 (model v1, behind alias `live`) and 2 (model v2, published by serverless_package)."""
    iam = moto_server.client("iam")
    role = iam.create_role(RoleName="flightdeck-lambda", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
    client = moto_server.client("lambda")
    client.create_function(FunctionName=FUNCTION, Runtime="python3.11", Role=role, Handler="handler.handler",
                           Code={"ZipFile": lambda_zip("1")})
    client.publish_version(FunctionName=FUNCTION, Description=f"flightdeck model={MODEL} version=1")
    client.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion="1")
    client.update_function_code(FunctionName=FUNCTION, ZipFile=lambda_zip("2"))
    assert client.publish_version(FunctionName=FUNCTION,
                                  Description=f"flightdeck model={MODEL} version=2")["Version"] == "2"
    return client


@pytest.fixture
def registry(flightdeck_home) -> Registry:
    """Model `credit`: v1 champion, v2 challenger (sources need not exist for alias moves)."""
    registry = Registry.from_settings()
    registry.client.create_registered_model(MODEL)
    for _ in range(2):
        registry.client.create_model_version(MODEL, (flightdeck_home / "model").as_uri())
    registry.client.set_registered_model_alias(MODEL, CHAMPION, "1")
    registry.client.set_registered_model_alias(MODEL, CHALLENGER, "2")
    return registry


def alias_of(client) -> tuple[str, dict]:
    reply = client.get_alias(FunctionName=FUNCTION, Name="live")
    return reply["FunctionVersion"], (reply.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}


def test_a_rollback_after_promotion_puts_the_alias_back_on_the_old_version(
        lambda_function, registry, webhook_server, monkeypatch):
    url, received = webhook_server
    monkeypatch.setenv("AIRFLOW_CONN_FLIGHTDECK_ALERTS", f"{url}/alerts")
    params = {"model_name": MODEL, "model_ref": CHALLENGER, "target": "lambda", "metrics_source": "cloudwatch",
              "target_options": {"function_name": FUNCTION, "alias": "live", "region": "us-east-1"},
              "steps": [25], "require_approval": False}
    xcoms = XComs()

    rollout = xcoms.push("resolve_rollout", release.resolve_rollout.function(
        "canary", params=params, dag_run=SimpleNamespace(conf={}, run_id="manual__drill")))
    assert xcoms.push("deploy", release.deploy.function(rollout))["state"]["candidate"] == "2"
    step = xcoms.push("step_1_weight", release.set_weight.function(rollout, 1))
    assert step["variants"] == ["1", "2"] and alias_of(lambda_function) == ("1", {"2": 0.25})
    promoted = xcoms.push("promote", release.promote.function(rollout))
    assert alias_of(lambda_function) == ("2", {})
    assert promoted["aliases"][CHAMPION] == "2"

    with pytest.raises(AirflowFailException, match="metric gate fail"):
        release.gate_outcome(rollout, {"decision": "fail", "reason": "error rate above the baseline's"},
                             SimpleNamespace(info=lambda *args: None))
    undone = release.rollback.function(run_id="manual__drill", ti=xcoms)

    assert alias_of(lambda_function) == ("1", {})  # the version serving before the rollout
    assert undone["state"]["baseline"] == "1" and undone["state"]["candidate_percent"] == 0.0
    assert registry.aliases(MODEL)[CHAMPION] == "1" and PREVIOUS not in registry.aliases(MODEL)
    (path, body), = received
    assert path == "/alerts"
    assert "rolled back" in body["text"]
    assert f"lambda:{FUNCTION}:live serves 1, 0 % to the candidate" in body["text"]


def test_a_rollout_past_its_max_duration_fails_its_next_step(lambda_function, registry, monkeypatch):
    params = {"model_name": MODEL, "target": "lambda", "metrics_source": "cloudwatch",
              "target_options": {"function_name": FUNCTION, "alias": "live"}, "max_duration_seconds": 60}
    rollout = release.resolve_rollout.function("canary", params=params,
                                               dag_run=SimpleNamespace(conf={}, run_id="manual__late"))
    release.deploy.function(rollout)
    rollout = {**rollout, "started_at": rollout["started_at"] - 61}  # as if resolved a minute ago

    with pytest.raises(AirflowFailException, match="max_duration_seconds"):
        release.set_weight.function(rollout, 1)
    assert alias_of(lambda_function) == ("1", {})  # no traffic moved


def run_rollout(run_id: str, ref: str, xcoms: XComs | None = None) -> XComs:
    """resolve → deploy → promote → finish of one promotion run, its XComs kept as Airflow would."""
    xcoms = xcoms or XComs()
    params = {"model_name": MODEL, "model_ref": ref, "target": "lambda", "metrics_source": "cloudwatch",
              "target_options": {"function_name": FUNCTION, "alias": "live", "region": "us-east-1"},
              "steps": [25], "require_approval": False}
    rollout = xcoms.push("resolve_rollout", release.resolve_rollout.function(
        "canary", params=params, dag_run=SimpleNamespace(conf={}, run_id=run_id)))
    release.deploy.function(rollout)
    xcoms.push("promote", release.promote.function(rollout))
    release.finish.function(rollout, run_id=run_id)
    return xcoms


def test_rerunning_an_old_runs_rollback_after_a_later_promotion_moves_nothing(
        lambda_function, registry, flightdeck_home, webhook_server, monkeypatch):
    url, received = webhook_server
    monkeypatch.setenv("AIRFLOW_CONN_FLIGHTDECK_ALERTS", f"{url}/alerts")
    lambda_function.update_function_code(FunctionName=FUNCTION, ZipFile=lambda_zip("3"))
    lambda_function.publish_version(FunctionName=FUNCTION, Description=f"flightdeck model={MODEL} version=3")
    registry.client.create_model_version(MODEL, (flightdeck_home / "model").as_uri())

    first = run_rollout("manual__first", CHALLENGER)  # v2 over v1
    assert alias_of(lambda_function) == ("2", {}) and registry.aliases(MODEL)[CHAMPION] == "2"
    run_rollout("manual__second", "3")  # v3 over v2
    assert alias_of(lambda_function) == ("3", {}) and registry.aliases(MODEL)[CHAMPION] == "3"
    aliases_before = registry.aliases(MODEL)

    undone = release.rollback.function(run_id="manual__first", ti=first)  # the first run cleared, re-run

    assert alias_of(lambda_function) == ("3", {})  # production stays on what the later run promoted
    assert registry.aliases(MODEL) == aliases_before
    assert len(undone["left_alone"]) == 2
    assert "now serves versions ['3']" in undone["left_alone"][0]
    assert "'champion' of 'credit' is v3, not v2" in undone["left_alone"][1]
    assert "Left alone:" in received[-1][1]["text"] and "rolled back" in received[-1][1]["text"]

    # A re-run of the first run's promote (with its XComs) does not take the alias back either.
    promoted = release.promote.function(first.values["resolve_rollout"])
    assert registry.aliases(MODEL)[CHAMPION] == "3" and "is v3, not v1" in promoted["left_alone"]


def test_a_second_rollout_of_a_model_fails_fast_while_another_holds_it(lambda_function, registry):
    params = {"model_name": MODEL, "model_ref": CHALLENGER, "target": "lambda", "metrics_source": "cloudwatch",
              "target_options": {"function_name": FUNCTION, "alias": "live", "region": "us-east-1"}}
    holder = release.resolve_rollout.function("canary", params=params,
                                              dag_run=SimpleNamespace(conf={}, run_id="manual__canary"))
    again = release.resolve_rollout.function("canary", params=params,  # a retry of the holder is let through
                                             dag_run=SimpleNamespace(conf={}, run_id="manual__canary"))
    assert again["candidate_version"] == holder["candidate_version"]

    with pytest.raises(AirflowFailException, match="ReleaseLockedError: .*'credit' is being released by run "
                                                    "'manual__canary'"):
        release.resolve_rollout.function("canary", params=params,  # e.g. a second trigger, or the other DAG
                                         dag_run=SimpleNamespace(conf={}, run_id="manual__other"))

    release.finish.function(holder, run_id="manual__canary")  # the holder ends: the model is free again
    taken = release.resolve_rollout.function("canary", params=params,
                                             dag_run=SimpleNamespace(conf={}, run_id="manual__other"))
    assert taken["candidate_version"] == "2"
