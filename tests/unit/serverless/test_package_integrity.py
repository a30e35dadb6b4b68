"""The Lambda zip is deployed only if it is the one packaged and verified (same CodeSha256), also
through the serverless_package DAG's verify and deploy tasks and through a Lambda target rebuilt
from the deploy's record in a later task."""

import io
import json
import re
import zipfile
from types import SimpleNamespace

import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException
from moto import mock_aws

from flightdeck.delivery.targets.aws_lambda import (
    LambdaAliasTarget,
    LambdaPackageChangedError,
    LambdaPackageError,
)
from flightdeck.errors import ConfigError
from flightdeck.serverless.deploy import deploy_package
from flightdeck.serverless.package import PackageIntegrityError, code_sha256, read_checked

FUNCTION = "flightdeck-integrity"


def _zip(body: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("flightdeck/serverless/handler.py", body)
    return buffer.getvalue()


@pytest.fixture
def aws(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        role = boto3.client("iam").create_role(
            RoleName="flightdeck-lambda", AssumeRolePolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                        "Principal": {"Service": "lambda.amazonaws.com"}}]}))
        yield boto3.client("lambda"), role["Role"]["Arn"]


def _deploy(client, role_arn, zip_path, sha):
    return deploy_package(client, zip_path=str(zip_path), expected_sha256=sha, function_name=FUNCTION,
                          alias="live", model_name="fraud", model_version="1", role_arn=role_arn,
                          poll_seconds=0.01)


def test_a_zip_changed_after_verification_is_not_deployed(aws, tmp_path):
    client, role_arn = aws
    zip_path = tmp_path / "lambda-fraud-1.zip"
    zip_path.write_bytes(_zip("def handler(event, context):\n    return 1\n"))
    verified = code_sha256(zip_path.read_bytes())
    zip_path.write_bytes(_zip("def handler(event, context):\n    return 'tampered'\n"))
    tampered = code_sha256(zip_path.read_bytes())

    with pytest.raises(PackageIntegrityError) as caught:
        _deploy(client, role_arn, zip_path, verified)
    assert verified in str(caught.value) and tampered in str(caught.value)
    assert client.list_functions()["Functions"] == []  # nothing reached Lambda


def test_the_verified_zip_is_deployed_with_its_digest(aws, tmp_path):
    client, role_arn = aws
    zip_path = tmp_path / "lambda-fraud-1.zip"
    zip_path.write_bytes(_zip("def handler(event, context):\n    return 1\n"))
    sha = code_sha256(zip_path.read_bytes())

    deployed = _deploy(client, role_arn, zip_path, sha)
    published = client.get_function_configuration(FunctionName=FUNCTION, Qualifier=deployed["version"])
    assert published["CodeSha256"] == sha
    assert client.get_alias(FunctionName=FUNCTION, Name="live")["FunctionVersion"] == deployed["version"]


def test_read_checked_returns_the_bytes_it_checked(tmp_path):
    data = _zip("x = 1\n")
    (tmp_path / "p.zip").write_bytes(data)
    assert read_checked(tmp_path / "p.zip", code_sha256(data)) == data
    with pytest.raises(PackageIntegrityError, match=re.escape(code_sha256(b"other"))):
        read_checked(tmp_path / "p.zip", code_sha256(b"other"))


def test_the_dags_tasks_refuse_a_zip_changed_after_packaging(aws, tmp_path):
    from flightdeck.airflow import serverless

    client, role_arn = aws
    zip_path = tmp_path / "lambda-fraud-1.zip"
    zip_path.write_bytes(_zip("def handler(event, context):\n    return 1\n"))
    built = {"zip_path": str(zip_path), "code_sha256": code_sha256(zip_path.read_bytes()), "model_name": "fraud",
             "model_version": "1"}
    zip_path.write_bytes(_zip("def handler(event, context):\n    return 'tampered'\n"))
    run = SimpleNamespace(conf={}, run_id="manual__tampered")

    with pytest.raises(AirflowFailException, match="PackageIntegrityError: .*as packaged and verified"):
        serverless.verify.function(built, run_id=run.run_id)  # before the zip is unpacked or run
    with pytest.raises(AirflowFailException, match="PackageIntegrityError: .*as packaged and verified"):
        serverless.deploy.function(built, {"code_sha256": built["code_sha256"]},
                                   params={"model_name": "fraud", "function_name": FUNCTION, "role_arn": role_arn},
                                   dag_run=run)
    assert client.list_functions()["Functions"] == []  # nothing reached Lambda


def _latest(client) -> str:
    return client.get_function_configuration(FunctionName=FUNCTION)["CodeSha256"]


def _published(client) -> list[str]:
    listed = client.list_versions_by_function(FunctionName=FUNCTION)["Versions"]
    return sorted(v["Version"] for v in listed if v["Version"] != "$LATEST")


def _first_version(aws, tmp_path) -> None:
    """The function with a first version behind the alias, deployed from a verified zip."""
    client, role_arn = aws
    first = tmp_path / "lambda-fraud-1.zip"
    first.write_bytes(_zip("def handler(event, context):\n    return 1\n"))
    _deploy(client, role_arn, first, code_sha256(first.read_bytes()))


def test_a_target_rebuilt_from_the_deploy_record_uploads_only_the_verified_zip(aws, tmp_path):
    client, _ = aws
    _first_version(aws, tmp_path)
    zip_path = tmp_path / "lambda-fraud-2.zip"
    verified_bytes = _zip("def handler(event, context):\n    return 2\n")
    zip_path.write_bytes(verified_bytes)
    verified = code_sha256(verified_bytes)
    record = deploy_package(client, zip_path=str(zip_path), expected_sha256=verified, function_name=FUNCTION,
                            alias="live", model_name="fraud", model_version="2", canary_percent=10,
                            poll_seconds=0.01)["target"]
    record = json.loads(json.dumps(record))  # as a later task reads it
    assert (record["zip_file"], record["zip_sha256"]) == (str(zip_path), verified)
    latest, published = _latest(client), _published(client)
    assert latest == verified

    # A re-run task rebuilds the target from the record after the file changed on disk.
    zip_path.write_bytes(_zip("def handler(event, context):\n    return 'tampered'\n"))
    tampered = code_sha256(zip_path.read_bytes())
    with pytest.raises(LambdaPackageChangedError) as caught:
        LambdaAliasTarget.from_dict(record, client).deploy()
    message = str(caught.value)
    assert str(zip_path) in message and verified in message and tampered in message and "Fix:" in message
    assert isinstance(caught.value, LambdaPackageError)
    assert (_latest(client), _published(client)) == (latest, published)  # nothing was uploaded

    # The untouched zip is accepted: the same version, still at 10 %.
    zip_path.write_bytes(verified_bytes)
    rebuilt = LambdaAliasTarget.from_dict(record, client)
    state = rebuilt.deploy()
    assert (state.candidate, rebuilt.set_weight(10).candidate_percent) == (record["candidate_version"], 10.0)
    assert (_latest(client), _published(client)) == (latest, published)


def test_a_zip_path_without_a_digest_is_pinned_by_its_first_upload(aws, tmp_path):
    client, _ = aws
    _first_version(aws, tmp_path)
    zip_path = tmp_path / "hand-built.zip"
    zip_path.write_bytes(_zip("def handler(event, context):\n    return 3\n"))
    uploaded = code_sha256(zip_path.read_bytes())

    target = LambdaAliasTarget(client, function_name=FUNCTION, alias="live", model_name="fraud", model_version="3",
                               zip_file=str(zip_path), poll_seconds=0.01)  # accepted without a digest
    candidate = target.deploy().candidate
    latest, published = _latest(client), _published(client)
    assert latest == uploaded and candidate in published
    record = target.to_dict()
    assert record["zip_sha256"] == uploaded

    zip_path.write_bytes(_zip("def handler(event, context):\n    return 'tampered'\n"))
    with pytest.raises(LambdaPackageChangedError, match=re.escape(uploaded)):
        LambdaAliasTarget.from_dict(record, client).deploy()
    assert (_latest(client), _published(client)) == (latest, published)  # nothing was uploaded


def test_a_digest_needs_a_zip_and_must_read_as_a_code_sha256(aws, tmp_path):
    client, _ = aws
    common = {"function_name": FUNCTION, "alias": "live", "model_name": "fraud", "model_version": "1"}
    with pytest.raises(ConfigError, match="zip_sha256.*no zip_file"):
        LambdaAliasTarget(client, use_published=True, zip_sha256=code_sha256(b"x"), **common)
    for bad in ("abc", "0" * 64, code_sha256(b"x")[:-2]):
        with pytest.raises(ConfigError, match="not a CodeSha256"):
            LambdaAliasTarget(client, zip_file=str(tmp_path / "p.zip"), zip_sha256=bad, **common)
