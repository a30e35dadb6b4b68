"""A canary on a Lambda alias judged by the metric gate on CloudWatch, without Airflow: the
pieces promote_canary wires together for `target: lambda` (LambdaAliasTarget with the
versions serverless_package published, CloudWatchSource, `gating.look_once`) against moto.

Lambda's metrics are played by `emit` as the alias would split the traffic. A promote_canary
dag.test() with target lambda is not run here (its run time would exceed the suite's budget).
"""

from __future__ import annotations

import io
import json
import time
import zipfile

import pytest

from flightdeck.delivery.gating import look_once
from flightdeck.delivery.sources.base import WindowStart
from flightdeck.delivery.targets.aws_lambda import LambdaAliasTarget
from flightdeck.delivery.targets.base import TrafficState
from tests.integration.delivery.conftest import REGION
from tests.integration.serverless.cloudwatch_metrics import emit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FUNCTION = "flightdeck-scorer"
GATES = {"min_requests": 200, "min_requests_hard_fail": 50}
DURATIONS = [9.0, 11.0, 13.0, 15.0]  # ms, the same for both versions


def package(version: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("handler.py", date_time=(2026, 1, 1, 0, 0, 0)),
                         f"def handler(event, context):\n    return {{'model_version': '{version}'}}\n")
    return buffer.getvalue()


@pytest.fixture
def published(moto_server):
    """Versions 1 and 2 published as serverless_package publishes them; alias live → 1."""
    role = moto_server.client("iam").create_role(
        RoleName="flightdeck-lambda", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
    client = moto_server.client("lambda")
    client.create_function(FunctionName=FUNCTION, Runtime="python3.11", Role=role, Handler="handler.handler",
                           Code={"ZipFile": package("1")})
    client.publish_version(FunctionName=FUNCTION, Description="flightdeck model=credit version=1")
    client.update_function_code(FunctionName=FUNCTION, ZipFile=package("2"))
    client.publish_version(FunctionName=FUNCTION, Description="flightdeck model=credit version=2")
    client.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion="1")
    return client


def look(target: LambdaAliasTarget, since: WindowStart) -> dict:
    baseline, candidate = target.variant_names()
    # The source as release._source_config builds it; the endpoint comes from AWS_ENDPOINT_URL.
    source = {"kind": "cloudwatch", "function_name": FUNCTION, "alias": "live", "region": REGION}
    selector = {"baseline_variant": baseline, "baseline_version": "1", "candidate_variant": candidate,
                "candidate_version": "2"}
    return look_once(source, selector, since.to_dict(), GATES, alpha=0.01, elapsed_s=30.0, bake_s=3.0,
                     max_s=600.0, final=False)


def serve(cloudwatch, state: TrafficState, requests: int, candidate_error_rate: float) -> None:
    """`requests` invocations of the alias, split as its weights say."""
    to_candidate = round(requests * state.candidate_percent / 100)
    emit(cloudwatch, FUNCTION, "live", state.baseline, DURATIONS * ((requests - to_candidate) // 4))
    emit(cloudwatch, FUNCTION, "live", state.candidate, DURATIONS * (to_candidate // 4),
         errors=round(to_candidate * candidate_error_rate))


@pytest.mark.parametrize(("error_rate", "decision"), [(0.1, "fail"), (0.0, "pass")], ids=["failing", "clean"])
def test_the_gate_reads_the_alias_versions_and_decides(moto_server, published, error_rate, decision):
    target = LambdaAliasTarget(published, function_name=FUNCTION, alias="live", model_name="credit",
                               model_version="2", use_published=True, poll_seconds=0.05)
    assert target.deploy() == TrafficState(target.name, "1", "2", 0.0)
    since = WindowStart(0, time.time())
    state = target.set_weight(40)
    serve(moto_server.client("cloudwatch"), state, requests=4000, candidate_error_rate=error_rate)

    outcome = look(target, since)
    assert (outcome["baseline"]["requests"], outcome["candidate"]["requests"]) == (2400, 1600)
    assert outcome["candidate"]["errors"] == round(1600 * error_rate)
    assert outcome["decision"] == decision, outcome["reason"]
    if decision == "fail":
        assert "error" in outcome["reason"]
        assert target.rollback() == TrafficState(target.name, "1", "2", 0.0)
        reply = published.get_alias(FunctionName=FUNCTION, Name="live")
        assert reply["FunctionVersion"] == "1" and not (reply.get("RoutingConfig") or {}).get(
            "AdditionalVersionWeights")
