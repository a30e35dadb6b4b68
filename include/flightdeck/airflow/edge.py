"""The tasks of `edge_export`: thin adapters over `flightdeck.edge`.

The bundle signing key comes from the Airflow connection `flightdeck_edge_signing` (its
password holds the PEM private key, or its extra `{"key_file": "/path/key.pem"}` names the
file), else `FLIGHTDECK_EDGE_SIGNING_KEY` (a PEM file path), else the embedded default: a
key pair generated once under `$FLIGHTDECK_HOME/edge/keys/` (the log says where the public
key is).
"""

from __future__ import annotations

import logging

from airflow.sdk import Connection, task
from airflow.sdk.exceptions import AirflowNotFoundException

from flightdeck.airflow.defaults import fail_fast_on_user_error, registry

log = logging.getLogger(__name__)

SIGNING_CONN_ID = "flightdeck_edge_signing"


def edge_params() -> dict:
    """The DAG's Params: the fields of `EdgeExportParams`."""
    from flightdeck.airflow.params import params_from_model
    from flightdeck.edge.params import EdgeExportParams

    return params_from_model(EdgeExportParams)


def _export_dir(run_id: str):
    from flightdeck.config import get_settings, safe_run_id

    return get_settings().staging_dir / f"edge-{safe_run_id(run_id)}"


def signing_key():
    """The Ed25519 private key bundles are signed with (see the module docstring)."""
    from flightdeck.config import get_settings
    from flightdeck.edge.keys import default_signing_key, load_private_key, private_key_from_pem

    try:
        conn = Connection.get(SIGNING_CONN_ID)
    except AirflowNotFoundException:
        return default_signing_key(get_settings().home)
    extra = conn.extra_dejson or {}
    if extra.get("key_file"):
        return load_private_key(extra["key_file"])
    if conn.password:
        return private_key_from_pem(conn.password.encode(), f"connection {SIGNING_CONN_ID}")
    from flightdeck.edge.errors import EdgeError

    raise EdgeError(f"connection {SIGNING_CONN_ID} has neither a PEM password nor extra key_file. "
                    "Fix: set one of them (or delete the connection to use the default key).")


@task
def resolve_export(params=None, dag_run=None) -> dict:
    """Check the Params and resolve the model reference to its version number before any work."""
    from flightdeck.airflow.params import validated
    from flightdeck.airflow.pipeline import with_asset_conf
    from flightdeck.edge.params import EdgeExportParams
    from flightdeck.edge.store import open_store

    checked = validated(EdgeExportParams, with_asset_conf("edge_export", params), dag_run)
    with fail_fast_on_user_error():
        open_store(checked.store or "unused")
        resolved = registry().resolve(checked.model_name, checked.model_ref)
    return {**checked.model_dump(mode="json"), "version": resolved.version}


@task
def export_artifacts(resolved: dict, run_id=None) -> dict:
    """ONNX float/int8 and the distilled TFLite student, measured and judged (not yet enforced)."""
    from flightdeck.edge.export import export_version

    with fail_fast_on_user_error():
        report = export_version(registry(), resolved["model_name"], resolved["version"], _export_dir(run_id))
    return {"formats": report["formats"], "misses": report["misses"], "champion_auc": report["champion_auc"]}


@task
def log_to_mlflow(resolved: dict, exported: dict, run_id=None) -> str:
    """The table (size, latency, AUC per artifact) as metrics, plus report, table and artifacts."""
    from flightdeck.edge.export import load_report, log_export

    out = _export_dir(run_id)
    mlflow_run = log_export(registry(), load_report(out), out,
                            run_key=f"edge:{resolved['model_name']}:{resolved['version']}:{run_id}")
    log.info("logged the edge export to MLflow run %s", mlflow_run)
    return mlflow_run


@task
def check_gates(mlflow_run_id: str, run_id=None) -> None:
    """Fail (without retries) naming every artifact that missed a gate and by how much."""
    from flightdeck.edge.export import enforce, load_report

    with fail_fast_on_user_error():
        enforce(load_report(_export_dir(run_id)))


@task
def publish_bundle(resolved: dict, run_id=None) -> dict:
    """Sign the chosen artifact and publish it to the store's channel with the rollout percentage."""
    from flightdeck.config import get_settings
    from flightdeck.edge.publish import publish_artifact

    store = resolved["store"] or str(get_settings().home / "edge" / "store")
    with fail_fast_on_user_error():
        published = publish_artifact(_export_dir(run_id), resolved["publish_format"], store, signing_key(),
                                     float(resolved["rollout_percent"]), resolved["channel"])
    log.info("published bundle %s to %s (channel %s, %s %% of devices)", published.bundle_id, published.store,
             published.channel, resolved["rollout_percent"])
    return published.__dict__
