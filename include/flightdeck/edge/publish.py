"""Publish an exported artifact as a signed OTA bundle (export side of `edge.bundle`)."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flightdeck.edge.bundle import (
    FORMATS,
    MANIFEST,
    MAX_POINTER_BYTES,
    SIGNATURE,
    Published,
    build_manifest,
    bundle_prefix,
    channel_key,
    parse_manifest,
    parse_version,
    point_channel,
    publish,
    read_pointer,
)
from flightdeck.edge.errors import EdgeError, StoreError
from flightdeck.edge.export import REPORT, SELF_TEST_TOLERANCE
from flightdeck.edge.store import open_store

MIN_AGENT_VERSION = "1.0.0"


def publish_artifact(export_dir: Path, fmt: str, store_uri: str, key: Ed25519PrivateKey, rollout_percent: float,
                     channel: str = "stable", min_agent_version: str = MIN_AGENT_VERSION) -> Published:
    """Sign the `fmt` artifact of an export folder and publish it to the store's channel."""
    folder = Path(export_dir) / fmt
    if fmt not in FORMATS:
        raise EdgeError(f"format {fmt!r} is not one of {sorted(FORMATS)}. Fix: choose one of them.")
    if not folder.is_dir():
        raise EdgeError(f"{export_dir} has no {fmt} artifact (it has {sorted(p.name for p in Path(export_dir).iterdir() if p.is_dir())}). "
                        "Fix: publish a format the export produced (onnx_int8 exists only when something was quantised).")
    report = json.loads((Path(export_dir) / REPORT).read_text())
    if report["misses"]:
        raise EdgeError(f"the export of {report['model_name']} v{report['model_version']} missed its gates "
                        f"({'; '.join(report['misses'])}). Fix: do not publish it; re-export after fixing the model.")
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    row = next((r for r in report["rows"] if r["name"] == fmt), {})
    manifest = build_manifest(model_name=report["model_name"], model_version=report["model_version"], fmt=fmt,
                              files=files, rollout_percent=rollout_percent, min_agent_version=min_agent_version,
                              self_test_tolerance=SELF_TEST_TOLERANCE[fmt],
                              source={"mlflow_run_id": report["source_run_id"], "auc": row.get("auc"),
                                      "champion_auc": report["champion_auc"]})
    return publish(open_store(store_uri), manifest, files, key, channel)


def repoint_channel(store_uri: str, model_name: str, bundle_id: str, key: Ed25519PrivateKey,
                    channel: str = "stable", rollback: bool = False) -> dict:
    """Point a channel at a bundle already in the store, with a new signed pointer (next sequence,
    fresh expiry). Renews a channel before its pointer expires; with `rollback=True`, moves devices
    back to an older model version (they refuse a downgrade otherwise). Returns the pointer."""
    store = open_store(store_uri)
    prefix = bundle_prefix(model_name, bundle_id)
    try:
        body = store.get(f"{prefix}/{MANIFEST}")
        signature = store.get(f"{prefix}/{SIGNATURE}")
    except StoreError as exc:
        raise EdgeError(f"bundle {bundle_id} of {model_name} is not published in {store_uri} ({exc}). Fix: name a "
                        "bundle that edge-publish wrote there (<model version>-<format>), or publish it first.") from None
    manifest = parse_manifest(body, signature, key.public_key(), f"bundle {bundle_id}")
    current = _channel_version(store, model_name, channel, key)
    if current is not None and not rollback and \
            parse_version(manifest["model_version"]) < parse_version(current["model_version"]):
        raise EdgeError(f"channel {channel!r} of {model_name} serves version {current['model_version']} "
                        f"(bundle {current['bundle_id']}); pointing it at version {manifest['model_version']} is a "
                        "downgrade, which devices refuse unless the pointer is a signed rollback. Fix: pass "
                        "rollback=True (`flightdeck edge-repoint --rollback`) if the downgrade is deliberate.")
    return point_channel(store, model_name, channel, bundle_id, body, key, rollback=rollback)


def _channel_version(store, model_name: str, channel: str, key: Ed25519PrivateKey) -> dict | None:
    """The manifest the channel's current pointer names (expired or not), None when the channel has no
    pointer this key signed or its bundle cannot be read."""
    try:
        pointer = read_pointer(store.get(channel_key(model_name, channel), max_bytes=MAX_POINTER_BYTES),
                               key.public_key(), model_name, channel, now=None)
        prefix = bundle_prefix(model_name, pointer["bundle_id"])
        return parse_manifest(store.get(f"{prefix}/{MANIFEST}"), store.get(f"{prefix}/{SIGNATURE}"),
                              key.public_key(), f"bundle {pointer['bundle_id']}")
    except EdgeError:
        return None
