"""Deploy a built package: create or update the function, publish a version, point the alias.

A first deployment creates the function (through `create`, e.g. the Amazon provider's
`LambdaHook.create_lambda`), publishes version 1 and creates the alias on it. Later ones go
through `LambdaAliasTarget` (the one implementation of Lambda alias routing): new code on
`$LATEST`, a published version described `flightdeck model=<name> version=<v>`, then the alias
moves to it, or keeps the old version and sends `canary_percent` % to the new one.

Also the CloudWatch alarms a rollback watches: errors and p99 duration through the alias.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flightdeck.delivery.targets.aws_lambda import (
    CandidateIsBaselineError,
    LambdaAliasTarget,
    describe_candidate,
)
from flightdeck.serverless.package import HANDLER, LAMBDA_RUNTIME, read_checked


def _missing(exc: Exception) -> bool:
    return (getattr(exc, "response", None) or {}).get("Error", {}).get("Code") == "ResourceNotFoundException"


def _wait_active(client: Any, function_name: str, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        config = client.get_function_configuration(FunctionName=function_name)
        if config.get("State") != "Pending" and config.get("LastUpdateStatus") != "InProgress":
            return config
        if time.monotonic() > deadline:
            raise TimeoutError(f"{function_name} still not active after {timeout:.0f} s")
        time.sleep(1.0)


def deploy_package(client: Any, *, zip_path: str, expected_sha256: str, function_name: str, alias: str,
                   model_name: str, model_version: str, role_arn: str | None = None, canary_percent: float | None = None,
                   memory_mb: int = 128, timeout_s: int = 10, create: Callable[..., dict] | None = None,
                   poll_seconds: float = 1.0) -> dict:
    """Put the package live behind `alias` (or as a `canary_percent` % canary). Idempotent:
    re-deploying the same package publishes nothing new. Returns versions and traffic state.

    The zip is read once, checked against `expected_sha256` (the CodeSha256 it was packaged and
    verified with; PackageIntegrityError otherwise) before any AWS call, and those bytes are uploaded.
    The returned `target` records the zip's path with that digest (`zip_sha256`): a target rebuilt
    from it in a later task refuses the file if its bytes changed (LambdaPackageChangedError)."""
    from flightdeck.errors import ConfigError

    package = read_checked(zip_path, expected_sha256)
    description = describe_candidate(model_name, model_version)
    try:
        client.get_function_configuration(FunctionName=function_name)
        exists = True
    except Exception as exc:
        if not _missing(exc):
            raise
        exists = False
    if not exists:
        if not role_arn:
            raise ConfigError("role_arn", f"function {function_name!r} does not exist and no execution role was "
                              "given", "pass role_arn (terraform output lambda_role_arn) or create the function "
                              "with terraform first")
        hook_style = create is not None  # the provider hook takes snake_case keywords
        create = create or client.create_function
        code = {"ZipFile": package}
        kwargs = {"FunctionName": function_name, "Runtime": LAMBDA_RUNTIME, "Role": role_arn, "Handler": HANDLER,
                  "Code": code, "MemorySize": memory_mb, "Timeout": timeout_s, "Publish": False,
                  "Architectures": ["x86_64"]}
        if hook_style:
            kwargs = {"function_name": function_name, "runtime": LAMBDA_RUNTIME, "role": role_arn,
                      "handler": HANDLER, "code": code, "memory_size": memory_mb, "timeout": timeout_s,
                      "publish": False, "architectures": ["x86_64"]}
        create(**kwargs)
        _wait_active(client, function_name)
    try:
        client.get_alias(FunctionName=function_name, Name=alias)
        has_alias = True
    except Exception as exc:
        if not _missing(exc):
            raise
        has_alias = False
    if not has_alias:
        if exists:
            client.update_function_code(FunctionName=function_name, ZipFile=package)
            _wait_active(client, function_name)
        version = client.publish_version(FunctionName=function_name, Description=description)["Version"]
        client.create_alias(FunctionName=function_name, Name=alias, FunctionVersion=version)
        return {"function_name": function_name, "alias": alias, "version": version, "baseline": None,
                "created": not exists, "candidate_percent": 100.0}
    target = LambdaAliasTarget(client, function_name=function_name, alias=alias, model_name=model_name,
                               model_version=model_version, zip_file=package, zip_sha256=expected_sha256,
                               poll_seconds=poll_seconds)
    try:
        target.deploy()
    except CandidateIsBaselineError:  # this package already serves the alias: nothing to do
        return {"function_name": function_name, "alias": alias, "version": target.baseline,
                "baseline": target.baseline, "created": False, "candidate_percent": 100.0}
    state = target.set_weight(canary_percent) if canary_percent else target.promote()
    # Later tasks rebuild the target from the path, checked against the digest of the bytes that went up.
    target.zip_file = zip_path
    return {"function_name": function_name, "alias": alias, "version": target.candidate_version,
            "baseline": target.baseline, "created": False, "candidate_percent": state.candidate_percent,
            "target": target.to_dict()}


def alarm_names(function_name: str, alias: str) -> dict[str, str]:
    """The names of the alarms `put_alarms` defines (what a rollback or a pager watches)."""
    return {"errors": f"{function_name}-{alias}-errors", "duration": f"{function_name}-{alias}-p99-duration"}


def put_alarms(cloudwatch: Any, function_name: str, alias: str, *, max_errors: int = 1,
               max_p99_ms: float = 1000.0, actions: list[str] | None = None) -> dict[str, str]:
    """Errors ≥ `max_errors` in a minute, or p99 Duration > `max_p99_ms` for 3 minutes, through
    the alias (dimension `Resource` = function:alias). Re-putting an alarm replaces it."""
    names = alarm_names(function_name, alias)
    dimensions = [{"Name": "FunctionName", "Value": function_name},
                  {"Name": "Resource", "Value": f"{function_name}:{alias}"}]
    common = {"Namespace": "AWS/Lambda", "Dimensions": dimensions, "Period": 60,
              "TreatMissingData": "notBreaching", "AlarmActions": actions or [], "ActionsEnabled": bool(actions)}
    cloudwatch.put_metric_alarm(AlarmName=names["errors"], MetricName="Errors", Statistic="Sum",
                                EvaluationPeriods=1, Threshold=float(max_errors),
                                ComparisonOperator="GreaterThanOrEqualToThreshold",
                                AlarmDescription=f"flightdeck: {function_name}:{alias} raised errors", **common)
    cloudwatch.put_metric_alarm(AlarmName=names["duration"], MetricName="Duration", ExtendedStatistic="p99",
                                EvaluationPeriods=3, Threshold=float(max_p99_ms),
                                ComparisonOperator="GreaterThanThreshold",
                                AlarmDescription=f"flightdeck: {function_name}:{alias} p99 duration", **common)
    return names
