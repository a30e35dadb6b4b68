"""LambdaAliasTarget against a moto server over real HTTP on loopback.

moto keeps an alias's RoutingConfig as given, publishes versions and reports CodeSha256 and
LastUpdateStatus like Lambda. It does not enforce the alias limits (one additional version,
weight below 1, no $LATEST), ignores RevisionId on UpdateAlias, and publishes a new version
even when the code has not changed: the target enforces the limits itself.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from flightdeck.delivery.targets.aws_lambda import (
    CandidateIsBaselineError,
    CandidateNotDeployedError,
    LambdaAliasNotFoundError,
    LambdaAliasTarget,
    LambdaFunctionNotFoundError,
    LambdaPackageError,
)
from flightdeck.delivery.targets.base import TrafficState
from flightdeck.errors import ConfigError, FlightdeckError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FUNCTION = "flightdeck-scorer"
REPO = Path(__file__).resolve().parents[3]


def lambda_zip(model_version: str) -> bytes:
    """A tiny deployment package whose handler reports the model version it serves."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("handler.py", date_time=(2026, 1, 1, 0, 0, 0))
        archive.writestr(info, f"def handler(event, context):\n    return {{'model_version': '{model_version}'}}\n")
    return buffer.getvalue()


class CountingClient:
    """A boto3 client that counts the calls made through it."""

    def __init__(self, client) -> None:
        self._client = client
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name):
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args, **kwargs):
            self.calls[name] += 1
            return attribute(*args, **kwargs)

        return call


@pytest.fixture
def aws_lambda(moto_server):
    """A function with version 1 published and alias `live` → 1; the Lambda client."""
    iam = moto_server.client("iam")
    role = iam.create_role(
        RoleName="flightdeck-lambda", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "lambda.amazonaws.com"}}]}),
    )["Role"]["Arn"]
    client = moto_server.client("lambda")
    client.create_function(FunctionName=FUNCTION, Runtime="python3.11", Role=role, Handler="handler.handler",
                           Code={"ZipFile": lambda_zip("7")})
    assert client.publish_version(FunctionName=FUNCTION, Description="flightdeck model=credit version=7")[
        "Version"] == "1"
    client.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion="1")
    return client


@pytest.fixture
def candidate_zip(tmp_path) -> Path:
    path = tmp_path / "candidate.zip"
    path.write_bytes(lambda_zip("8"))
    return path


def make_target(client, candidate_zip, **overrides) -> LambdaAliasTarget:
    kwargs = {"function_name": FUNCTION, "alias": "live", "model_name": "credit", "model_version": "8",
              "zip_file": candidate_zip, "poll_seconds": 0.05, **overrides}
    return LambdaAliasTarget(client, **kwargs)


def alias(client) -> tuple[str, dict]:
    """(FunctionVersion, AdditionalVersionWeights) of alias `live`."""
    reply = client.get_alias(FunctionName=FUNCTION, Name="live")
    return reply["FunctionVersion"], (reply.get("RoutingConfig") or {}).get("AdditionalVersionWeights", {})


def versions(client) -> dict[str, str]:
    """Published version → Description."""
    listed = client.list_versions_by_function(FunctionName=FUNCTION)["Versions"]
    return {v["Version"]: v.get("Description", "") for v in listed if v["Version"] != "$LATEST"}


def test_a_canary_walks_the_alias_from_baseline_to_candidate(aws_lambda, candidate_zip):
    client = CountingClient(aws_lambda)
    target = make_target(client, candidate_zip)

    assert target.deploy() == TrafficState(target.name, "1", "2", 0.0)
    assert versions(aws_lambda) == {"1": "flightdeck model=credit version=7",
                                    "2": "flightdeck model=credit version=8"}
    assert alias(aws_lambda) == ("1", {})  # published, but no traffic yet

    assert target.set_weight(5) == TrafficState(target.name, "1", "2", 5.0)
    assert target.set_weight(25) == TrafficState(target.name, "1", "2", 25.0)
    raw = aws_lambda.get_alias(FunctionName=FUNCTION, Name="live")
    assert raw["FunctionVersion"] == "1"
    assert raw["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.25}}  # moto keeps it as sent

    assert target.set_weight(50).candidate_percent == 50.0
    assert target.promote() == TrafficState(target.name, "1", "2", 100.0)
    assert alias(aws_lambda) == ("2", {})

    assert target.rollback() == TrafficState(target.name, "1", "2", 0.0)
    assert alias(aws_lambda) == ("1", {})
    assert set(versions(aws_lambda)) == {"1", "2"}


def test_repeating_a_step_changes_and_publishes_nothing(aws_lambda, candidate_zip):
    client = CountingClient(aws_lambda)
    target = make_target(client, candidate_zip)
    target.deploy()
    target.set_weight(25)
    before = client.calls.copy()
    revision = aws_lambda.get_alias(FunctionName=FUNCTION, Name="live")["RevisionId"]

    assert target.set_weight(25).candidate_percent == 25.0
    assert target.deploy() == TrafficState(target.name, "1", "2", 0.0)  # back to 0 %, as deploy says
    assert target.deploy().candidate_percent == 0.0

    calls = client.calls - before
    assert calls["publish_version"] == 0 and calls["update_function_code"] == 0
    assert calls["update_alias"] == 1  # only the 25 % → 0 % of the first repeated deploy
    assert set(versions(aws_lambda)) == {"1", "2"}
    assert aws_lambda.get_alias(FunctionName=FUNCTION, Name="live")["RevisionId"] == revision  # moto keeps it


def test_deploy_twice_from_fresh_targets_publishes_one_version(aws_lambda, candidate_zip):
    make_target(aws_lambda, candidate_zip).deploy()
    again = CountingClient(aws_lambda)
    # A retried task: new object, baseline given as the first attempt recorded it.
    assert make_target(again, candidate_zip, baseline="1").deploy().candidate == "2"
    assert again.calls["update_function_code"] == 0 and again.calls["publish_version"] == 0
    assert set(versions(aws_lambda)) == {"1", "2"}


def test_s3_package_is_published_once(aws_lambda, moto_server):
    s3 = moto_server.client("s3")
    s3.create_bucket(Bucket="flightdeck-artifacts")
    s3.put_object(Bucket="flightdeck-artifacts", Key="lambda/credit-8.zip", Body=lambda_zip("8"))
    target = LambdaAliasTarget(aws_lambda, function_name=FUNCTION, alias="live", model_name="credit",
                               model_version="8", s3_bucket="flightdeck-artifacts", s3_key="lambda/credit-8.zip",
                               poll_seconds=0.05)
    assert target.deploy().candidate == "2"
    # Rebuilt without the candidate's number, it re-uploads the code but reuses the version.
    again = LambdaAliasTarget.from_dict({**target.to_dict(), "candidate_version": None}, client=aws_lambda)
    assert again.deploy().candidate == "2"
    assert set(versions(aws_lambda)) == {"1", "2"}
    assert again.set_weight(10).candidate_percent == 10.0


def test_a_target_rebuilt_in_another_process_sees_and_moves_the_same_rollout(aws_lambda, candidate_zip):
    target = make_target(aws_lambda, candidate_zip)
    target.deploy()
    target.set_weight(25)
    carried = json.loads(json.dumps(target.to_dict()))  # what an XCom carries
    assert carried["baseline"] == "1" and carried["candidate_version"] == "2"
    assert carried["region"] == "us-east-1"

    script = ("import json, sys\n"
              "from flightdeck.delivery.targets.aws_lambda import LambdaAliasTarget\n"
              "target = LambdaAliasTarget.from_dict(json.loads(sys.argv[1]))\n"  # default boto3 client
              "before = target.state()\n"
              "after = target.set_weight(50)\n"
              "print(json.dumps([before.to_dict(), after.to_dict()]))\n")
    # The moto fixture's AWS_* variables (endpoint, dummy credentials) reach the child.
    result = subprocess.run([sys.executable, "-c", script, json.dumps(carried)], capture_output=True,
                            text=True, timeout=60, cwd=REPO, env=os.environ.copy(), check=True)
    before, after = json.loads(result.stdout.strip().splitlines()[-1])
    assert before == TrafficState(target.name, "1", "2", 25.0).to_dict()
    assert after == TrafficState(target.name, "1", "2", 50.0).to_dict()
    assert target.state().candidate_percent == 50.0

    # After promotion the alias points at 2, yet a rebuilt target still knows 1 is the baseline.
    target.promote()
    rebuilt = LambdaAliasTarget.from_dict(carried)
    assert rebuilt.state() == TrafficState(target.name, "1", "2", 100.0)
    assert rebuilt.rollback().candidate_percent == 0.0
    assert alias(aws_lambda) == ("1", {})


def test_missing_function_and_alias_raise_typed_errors(aws_lambda, candidate_zip):
    with pytest.raises(LambdaFunctionNotFoundError, match="function 'nope' does not exist"):
        make_target(aws_lambda, candidate_zip, function_name="nope").state()
    with pytest.raises(LambdaFunctionNotFoundError, match="'nope'"):
        make_target(aws_lambda, candidate_zip, function_name="nope", baseline="1").deploy()
    with pytest.raises(LambdaAliasNotFoundError, match="has no alias 'canary'.*create-alias"):
        make_target(aws_lambda, candidate_zip, alias="canary").deploy()
    with pytest.raises(LambdaFunctionNotFoundError, match="version 9 of function"):
        make_target(aws_lambda, candidate_zip, baseline="9").deploy()


def test_moving_traffic_before_deploy_is_refused(aws_lambda, candidate_zip):
    target = make_target(aws_lambda, candidate_zip)
    with pytest.raises(CandidateNotDeployedError, match="run deploy"):
        target.set_weight(10)
    with pytest.raises(CandidateNotDeployedError):
        target.promote()
    assert target.state() == TrafficState(target.name, "1", None, 0.0)
    assert target.rollback() == TrafficState(target.name, "1", None, 0.0)  # needs no candidate


def test_a_finished_rollout_is_not_rolled_out_again(aws_lambda, candidate_zip):
    first = make_target(aws_lambda, candidate_zip)
    first.deploy()
    first.promote()
    # A new rollout of the same model version reads the baseline from the alias: it is the candidate.
    with pytest.raises(CandidateIsBaselineError, match="already the baseline"):
        make_target(aws_lambda, candidate_zip).deploy()
    assert alias(aws_lambda) == ("2", {})
    with pytest.raises(CandidateIsBaselineError):
        make_target(aws_lambda, candidate_zip, candidate_version="2", baseline="2").set_weight(10)


def test_bad_packages_and_percentages_are_refused_before_any_call(aws_lambda, tmp_path):
    huge = tmp_path / "huge.zip"
    with huge.open("wb") as handle:  # sparse: 51 MB on paper, nothing on disk
        handle.truncate(51 * 1024 * 1024)
    with pytest.raises(LambdaPackageError, match=r"is 51\.0 MB zipped, over Lambda's 50\.0 MB.*S3"):
        make_target(aws_lambda, huge).deploy()
    with pytest.raises(LambdaPackageError, match="not a zip archive"):
        make_target(aws_lambda, b"not a zip").deploy()
    with pytest.raises(LambdaPackageError, match="cannot read the Lambda package"):
        make_target(aws_lambda, tmp_path / "missing.zip").deploy()
    assert set(versions(aws_lambda)) == {"1"}

    target = make_target(aws_lambda, lambda_zip("8"))
    for bad in (-1, 100.5, float("nan"), "25", True):
        with pytest.raises(ConfigError, match="percent"):
            target.set_weight(bad)
    with pytest.raises(ConfigError, match="bytes cannot be carried"):
        target.to_dict()
    with pytest.raises(ConfigError, match="exactly one of zip_file or s3_bucket"):
        LambdaAliasTarget(aws_lambda, function_name=FUNCTION, alias="live", model_name="credit",
                          model_version="8")
    with pytest.raises(ConfigError, match="baseline"):
        make_target(aws_lambda, b"", baseline="$LATEST")
    assert issubclass(LambdaPackageError, FlightdeckError)


def test_an_alias_on_latest_cannot_be_a_baseline(aws_lambda, candidate_zip):
    aws_lambda.update_alias(FunctionName=FUNCTION, Name="live", FunctionVersion="$LATEST")
    with pytest.raises(FlightdeckError, match=r"points to \$LATEST.*publish a version"):
        make_target(aws_lambda, candidate_zip).deploy()
