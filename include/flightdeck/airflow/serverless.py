"""The tasks of the serverless_package DAG: thin adapters over `flightdeck.serverless`.

AWS is reached through the Amazon provider's hooks and the Airflow connection named by the
Param `aws_conn_id` (default `aws_default`; without such a connection boto3's usual chain
applies: environment, profile, instance role).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from airflow.sdk import task

from flightdeck.airflow.defaults import fail_fast_on_user_error, registry

log = logging.getLogger(__name__)


def _workdir(run_id: str) -> Path:
    from flightdeck.config import get_settings, safe_run_id

    path = get_settings().staging_dir / "serverless" / safe_run_id(run_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _lambda_hook(params: dict):
    from airflow.providers.amazon.aws.hooks.lambda_function import LambdaHook

    return LambdaHook(aws_conn_id=params["aws_conn_id"], region_name=params.get("region"))


def sample_rows(columns: list[str], n: int = 50) -> list[dict]:
    """Complete rows of the synthetic generator, restricted to the model's inputs (for verify)."""
    from flightdeck.data.generator import generate_partition

    frame = generate_partition("2026-01-15", rows=4 * n, seed=7)[columns].dropna().head(n)
    return json.loads(frame.to_json(orient="records"))


@task
def package(params=None, dag_run=None, run_id=None) -> dict:
    """Build the Lambda zip of the Param's model version; fails with the measured size if too big."""
    from flightdeck.serverless.package import package_registered_model

    checked = _params(params, dag_run)
    with fail_fast_on_user_error():
        result = package_registered_model(registry(), checked["model_name"], checked["model_ref"], _workdir(run_id),
                                          **({"max_zipped": checked["max_zipped_bytes"]}
                                             if checked["max_zipped_bytes"] else {}))
    log.info("package %s: %.1f MB zipped, %.1f MB unzipped", result.zip_path, result.zipped_bytes / 2**20,
             result.unzipped_bytes / 2**20)
    return result.to_dict()


@task
def verify(built: dict, run_id=None) -> dict:
    """Run the packaged handler in a fresh process (v2 + direct events); compare with the gateway."""
    from flightdeck import runtime
    from flightdeck.serverless.package import extract, read_checked
    from flightdeck.serverless.verify import verify_package

    with fail_fast_on_user_error():
        read_checked(built["zip_path"], built["code_sha256"])
    root = extract(built["zip_path"], _workdir(run_id) / "unzipped")
    columns = runtime.input_columns(runtime.load_session(root / "model.onnx"))
    with fail_fast_on_user_error():
        report = verify_package(built["zip_path"], sample_rows(columns))
    (_workdir(run_id) / "verify.json").write_text(json.dumps(report.to_dict(), indent=2))
    log.info("verified: cold start %.3f s, warm p50 %.3f ms, peak RSS %.0f MB, max |Δscore| %.1g",
             report.cold_start_s, report.warm_p50_ms, report.peak_rss_mb, report.max_abs_diff)
    return {**report.to_dict(), "code_sha256": built["code_sha256"]}  # the digest deploy checks again


def _params(params: dict, dag_run) -> dict:
    from flightdeck.airflow.params import validated
    from flightdeck.airflow.pipeline import with_asset_conf
    from flightdeck.serverless.params import ServerlessPackageParams

    return validated(ServerlessPackageParams, with_asset_conf("serverless_package", params), dag_run).model_dump()


@task
def deploy(built: dict, verified: dict, params=None, dag_run=None) -> dict:
    """Create or update the function, publish a version, point the alias (optionally weighted)."""
    from flightdeck.serverless.deploy import deploy_package

    params = _params(params, dag_run)
    hook = _lambda_hook(params)
    with fail_fast_on_user_error():
        return deploy_package(hook.conn, zip_path=built["zip_path"], expected_sha256=verified["code_sha256"],
                              function_name=params["function_name"],
                              alias=params["alias"], model_name=built["model_name"],
                              model_version=built["model_version"], role_arn=params.get("role_arn"),
                              canary_percent=params.get("canary_percent"), memory_mb=params["memory_mb"],
                              timeout_s=params["timeout_seconds"], create=hook.create_lambda)


@task
def alarms(deployed: dict, verified: dict, params=None, dag_run=None) -> dict:
    """CloudWatch alarms on the alias's errors and p99 duration, named for the rollback to watch."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from flightdeck.serverless.deploy import put_alarms

    params = _params(params, dag_run)
    cloudwatch = AwsBaseHook(aws_conn_id=params["aws_conn_id"], client_type="cloudwatch",
                             region_name=params.get("region")).conn
    return put_alarms(cloudwatch, deployed["function_name"], deployed["alias"],
                      max_p99_ms=params["max_p99_ms"], actions=params.get("alarm_actions") or None)


def serverless_params() -> dict:
    """The DAG's Params: the fields of `ServerlessPackageParams`."""
    from flightdeck.airflow.params import params_from_model
    from flightdeck.serverless.params import ServerlessPackageParams

    return params_from_model(ServerlessPackageParams)
