"""serverless_package end to end with dag.test(): a real MLflow registry, the package built and
probed in a fresh process, and AWS played by a moto server on loopback.

moto cannot run the zipped handler (it needs a Docker engine to invoke functions; none runs
here): the DAG's verify task runs the handler in a fresh Python process instead, and function,
versions, alias, routing and alarms go through moto. A canary on such an alias is then taken
to 100 % by promote_canary with `target: lambda` (marked slow), its gates reading CloudWatch
metrics that a thread publishes as Lambda would for the traffic the alias splits.
"""

from __future__ import annotations

import json
import marshal
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import onnx
import pandas as pd
import pytest

from flightdeck import runtime
from flightdeck.serverless.deploy import deploy_package
from flightdeck.serverless.package import package_registered_model
from flightdeck.serving.db import upgrade
from tests.integration.serverless.cloudwatch_metrics import emit
from tests.support.models import onnx_model, records

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FUNCTION = "flightdeck-scorer"
MODEL = "credit"


def register(registry, seed: int) -> str:
    model = onnx_model(seed)
    example = pd.DataFrame(records(5))
    scores = runtime.score(runtime.load_session(model), example)
    # The parity evidence train_register logs (promote_canary's pre-flight asks for it).
    run_id = registry.log_run(f"key-{seed}", {"seed": seed}, {"onnx_parity_max_abs_diff": 0.0}, {}, f"seed-{seed}")
    uri = registry.log_onnx_model(run_id, onnx.load_from_string(model), example, scores)
    return registry.register(MODEL, uri, run_id, f"training-{seed}").version


@contextmanager
def lambda_traffic(lambda_client, cloudwatch, per_second: int = 200):
    """Publish, every second, the metrics of `per_second` clean invocations of the alias,
    split between its versions as its routing says (what Lambda would report)."""
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            alias = lambda_client.get_alias(FunctionName=FUNCTION, Name="live")
            weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
            left = per_second
            for version, weight in weights.items():
                share = round(per_second * weight)
                if share:
                    emit(cloudwatch, FUNCTION, "live", version, [9.0, 11.0, 13.0, 15.0] * (share // 4))
                left -= share
            emit(cloudwatch, FUNCTION, "live", alias["FunctionVersion"], [9.0, 11.0, 13.0, 15.0] * (left // 4))
            stop.wait(1.0)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def test_package_verify_deploy_and_canary(sqlite_sandbox, moto_server, wheel_cache, monkeypatch):
    import os

    home = sqlite_sandbox.root / "flightdeck"
    (home / "cache").mkdir(parents=True, exist_ok=True)
    link = home / "cache" / "lambda-wheels"
    if not link.exists():
        link.symlink_to(wheel_cache)
    registry = sqlite_sandbox.registry()
    assert register(registry, 1) == "1"
    assert register(registry, 2) == "2"  # the challenger: champion stays version 1
    role = moto_server.client("iam").create_role(
        RoleName="flightdeck-lambda", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
    aws_env = {key: os.environ[key] for key in os.environ if key.startswith("AWS_")}
    conf = {"model_name": MODEL, "model_ref": "champion", "function_name": FUNCTION, "role_arn": role}

    # Version 2's package is built beside the DAG run (a process each, on two cores): the
    # canary below deploys it.
    with ThreadPoolExecutor(1) as pool:
        canary_build = pool.submit(package_registered_model, registry, MODEL, "2", sqlite_sandbox.root / "out",
                                   wheel_cache=wheel_cache)
        first = sqlite_sandbox.dag_test("serverless_package", conf, env=aws_env)
        built = canary_build.result()
    assert first.get("state") == "success", first.get("tasks") or first["log"][-4000:]
    client = moto_server.client("lambda")
    alias = client.get_alias(FunctionName=FUNCTION, Name="live")
    assert alias["FunctionVersion"] == "1"
    published = client.get_function_configuration(FunctionName=FUNCTION, Qualifier="1")
    assert published["Description"] == f"flightdeck model={MODEL} version=1"
    assert published["Handler"] == "flightdeck.serverless.handler.handler"
    assert "cold start" in first["log"]
    alarms = {a["AlarmName"]: a for a in moto_server.client("cloudwatch").describe_alarms()["MetricAlarms"]}
    assert set(alarms) == {f"{FUNCTION}-live-errors", f"{FUNCTION}-live-p99-duration"}
    assert {"Name": "Resource", "Value": f"{FUNCTION}:live"} in alarms[f"{FUNCTION}-live-errors"]["Dimensions"]

    # The next version goes out as a 10 % canary through the weighted alias (the deploy task's
    # function, called directly: a second dag.test() would double the test's time).
    deployed = deploy_package(client, zip_path=built.zip_path, expected_sha256=built.code_sha256,
                              function_name=FUNCTION, alias="live",
                              model_name=MODEL, model_version="2", canary_percent=10, poll_seconds=0.05)
    assert (deployed["version"], deployed["baseline"], deployed["candidate_percent"]) == ("2", "1", 10.0)
    alias = client.get_alias(FunctionName=FUNCTION, Name="live")
    assert alias["FunctionVersion"] == "1"
    assert alias["RoutingConfig"]["AdditionalVersionWeights"] == {"2": pytest.approx(0.1)}
    assert client.get_function_configuration(FunctionName=FUNCTION, Qualifier="2")["Description"] == \
        f"flightdeck model={MODEL} version=2"
    # Bytecode names its sources where Lambda unzips them, not the build's temporary folder:
    # that is what makes two builds of one model the same zip (same CodeSha256).
    with zipfile.ZipFile(built.zip_path) as archive:
        pyc = next(n for n in archive.namelist() if n.startswith("flightdeck/serverless/__pycache__/handler."))
        code = marshal.loads(archive.read(pyc)[16:])
    assert code.co_filename == "/var/task/flightdeck/serverless/handler.py"


def publish_two_versions(moto_server) -> object:
    """Versions 1 and 2 of the function published as serverless_package publishes them (small
    stand-in zips: moto never runs them), alias live → 1 with a 10 % canary on 2."""
    import io

    role = moto_server.client("iam").create_role(
        RoleName="flightdeck-lambda", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]

    def package(version: str) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("handler.py", f"def handler(event, context):\n    return {{'version': '{version}'}}\n")
        return buffer.getvalue()

    client = moto_server.client("lambda")
    client.create_function(FunctionName=FUNCTION, Runtime="python3.11", Role=role, Handler="handler.handler",
                           Code={"ZipFile": package("1")})
    client.publish_version(FunctionName=FUNCTION, Description=f"flightdeck model={MODEL} version=1")
    client.update_function_code(FunctionName=FUNCTION, ZipFile=package("2"))
    client.publish_version(FunctionName=FUNCTION, Description=f"flightdeck model={MODEL} version=2")
    client.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion="1",
                        RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})
    return client


@pytest.mark.slow
def test_promote_canary_takes_the_lambda_canary_to_100_percent(sqlite_sandbox, moto_server):
    """promote_canary with target lambda: 50 %, a gate on CloudWatch, then 100 % and the
    registry's champion alias (approval off, as in the release tests). About 35 s, most of it
    dag.test()'s start-up: deselect with -m "not slow" when time is short."""
    import os

    registry = sqlite_sandbox.registry()
    assert (register(registry, 1), register(registry, 2)) == ("1", "2")  # idempotent: the versions above
    client = publish_two_versions(moto_server)
    aws_env = {key: os.environ[key] for key in os.environ if key.startswith("AWS_")}
    gateway_db = f"sqlite:///{sqlite_sandbox.root / 'gateway.db'}"
    upgrade(gateway_db)  # pre-flight checks the prediction log; backtest finds no labelled rows
    conf = {"model_name": MODEL, "model_ref": "challenger", "target": "lambda", "metrics_source": "cloudwatch",
            "target_options": {"function_name": FUNCTION, "alias": "live"}, "steps": [50], "bake_seconds": 3,
            "max_step_seconds": 60, "look_seconds": 1, "post_promotion_bake_seconds": 2,
            "require_approval": False, "gates": {"min_requests": 100, "min_requests_hard_fail": 30}}
    with lambda_traffic(client, moto_server.client("cloudwatch")):
        promoted = sqlite_sandbox.dag_test("promote_canary", conf,
                                           env={**aws_env, "FLIGHTDECK_GATEWAY_DATABASE_URL": gateway_db})
    tasks = promoted.get("tasks", {})
    assert promoted.get("state") == "success", tasks or promoted["log"][-4000:]
    assert tasks["step_1_gate"] == tasks["post_promotion_gate"] == "success" and tasks["rollback"] == "skipped"
    assert "gate decision: pass" in promoted["log"]
    alias = client.get_alias(FunctionName=FUNCTION, Name="live")
    assert alias["FunctionVersion"] == "2" and not (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights")
    assert registry.aliases(MODEL) == {"champion": "2", "previous": "1", "challenger": "2"}
