"""OTA bundles: model file(s) + a signed manifest, published to a store.

Store layout (one model name per folder):
    <model>/bundles/<bundle id>/manifest.json   the manifest (JSON, the exact signed bytes)
    <model>/bundles/<bundle id>/manifest.sig    Ed25519 signature of manifest.json
    <model>/bundles/<bundle id>/<file>          model, preprocessing spec, golden rows
    <model>/channels/<channel>.json             the signed channel pointer (below)

The bundle id is `<model version>-<format>`, so republishing the same model with a larger
rollout percentage keeps its id: the cohort hash (device id + bundle id) then only grows.
The channel pointer is written last, so a device never follows it to a half-written bundle.

The channel pointer is one object, {"body": <JSON text>, "signature": <hex Ed25519>}, whose
signed body names the model, the channel, a sequence that grows with every publish, the
bundle and the sha256 of its manifest, an expiry, and whether it is a rollback. A device
refuses a pointer that is unsigned, for another model or channel, expired (so a store frozen
on an old pointer is noticed), older than the newest it has seen (a replay), or that moves it
to an older model version without `rollback` signed in. Publishers re-sign a channel before
its pointer expires (`point_channel`).

The device agent imports this module: hashlib, json, cryptography only.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from flightdeck.config import NAME_PATTERN
from flightdeck.edge.errors import BundleError, EdgeError, PointerError, StoreError
from flightdeck.edge.keys import verify
from flightdeck.edge.store import Store

MANIFEST_SCHEMA = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
GOLDEN = "golden.json"
PREPROCESS = "preprocess.json"
FORMATS = {"onnx_float": "model.onnx", "onnx_int8": "model.onnx", "tflite_float32": "model.tflite",
           "tflite_float16": "model.tflite", "tflite_int8": "model.tflite"}
REQUIRED = ("schema", "bundle_id", "model_name", "model_version", "format", "model_file", "files",
            "min_agent_version", "created_at", "rollout_percent", "self_test")
COHORT_BUCKETS = 10_000
POINTER_SCHEMA = 1
POINTER_VALID_FOR = timedelta(days=30)
# Downloads are read up to a cap: a pointer or manifest beyond it is not read at all.
MAX_POINTER_BYTES = 64 * 1024
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_SIGNATURE_BYTES = 1024
_NAME = re.compile(NAME_PATTERN)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bundle_prefix(model_name: str, bundle_id: str) -> str:
    return f"{model_name}/bundles/{bundle_id}"


def channel_key(model_name: str, channel: str) -> str:
    return f"{model_name}/channels/{channel}.json"


def parse_version(text: str) -> tuple[int, ...]:
    """"1.2" → (1, 2); BundleError when not dotted integers."""
    try:
        return tuple(int(part) for part in str(text).split("."))
    except ValueError:
        raise BundleError(f"version {text!r} is not dotted integers. Fix: use e.g. '1.0'.") from None


def in_cohort(device_id: str, bundle_id: str, percent: float) -> bool:
    """Whether a device takes a bundle rolled out to `percent` % of devices.

    The device's bucket (0…9,999) is a sha256 of bundle id and device id: stable for one
    bundle (a growing percentage only adds devices), independent across bundles (the same
    devices are not always first).
    """
    digest = hashlib.sha256(f"{bundle_id}\x00{device_id}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % COHORT_BUCKETS
    return bucket < round(percent * COHORT_BUCKETS / 100)


def build_manifest(*, model_name: str, model_version: str, fmt: str, files: dict[str, bytes],
                   rollout_percent: float, min_agent_version: str, self_test_tolerance: float,
                   source: dict | None = None, created_at: datetime | None = None) -> dict:
    """The manifest of a bundle whose files are `files` (name → bytes); validates its inputs."""
    if fmt not in FORMATS:
        raise EdgeError(f"format {fmt!r} is not one of {sorted(FORMATS)}. Fix: choose one of them.")
    if not _NAME.match(model_name):
        raise EdgeError(f"model name {model_name!r} is not a plain name. Fix: letters, digits, '_', '.', '-'.")
    if not 0 <= rollout_percent <= 100:
        raise EdgeError(f"rollout_percent {rollout_percent} is outside 0..100. Fix: give a percentage.")
    parse_version(min_agent_version)
    model_file = FORMATS[fmt]
    for needed in (model_file, GOLDEN):
        if needed not in files:
            raise EdgeError(f"a {fmt} bundle needs {needed}. Fix: export the artifact with its golden rows.")
    return {
        "schema": MANIFEST_SCHEMA,
        "bundle_id": f"{model_version}-{fmt}",
        "model_name": model_name,
        "model_version": str(model_version),
        "format": fmt,
        "model_file": model_file,
        "files": {name: {"sha256": sha256(data), "size": len(data)} for name, data in sorted(files.items())},
        "min_agent_version": min_agent_version,
        "created_at": (created_at or datetime.now(UTC)).isoformat(),
        "rollout_percent": float(rollout_percent),
        "self_test": {"file": GOLDEN, "tolerance": float(self_test_tolerance)},
        "source": source or {},
    }


def encode_manifest(manifest: dict) -> bytes:
    return json.dumps(manifest, indent=1, sort_keys=True).encode()


@dataclass(frozen=True)
class Published:
    store: str
    bundle_id: str
    channel: str
    manifest_sha256: str


def publish(store: Store, manifest: dict, files: dict[str, bytes], key: Ed25519PrivateKey,
            channel: str = "stable") -> Published:
    """Upload files, then the manifest and its signature, then point the channel at the bundle."""
    if not _NAME.match(channel):
        raise EdgeError(f"channel {channel!r} is not a plain name. Fix: e.g. 'stable' or 'beta'.")
    prefix = bundle_prefix(manifest["model_name"], manifest["bundle_id"])
    for name, data in files.items():
        if manifest["files"].get(name, {}).get("sha256") != sha256(data):
            raise EdgeError(f"{name} does not match the manifest. Fix: build the manifest from these files.")
        store.put(f"{prefix}/{name}", data)
    body = encode_manifest(manifest)
    store.put(f"{prefix}/{MANIFEST}", body)
    store.put(f"{prefix}/{SIGNATURE}", key.sign(body))
    point_channel(store, manifest["model_name"], channel, manifest["bundle_id"], body, key)
    return Published(store.uri, manifest["bundle_id"], channel, sha256(body))


def point_channel(store: Store, model_name: str, channel: str, bundle_id: str, manifest_body: bytes,
                  key: Ed25519PrivateKey, *, rollback: bool = False, valid_for: timedelta = POINTER_VALID_FOR,
                  now: datetime | None = None) -> dict:
    """Sign and write the channel's pointer to a published bundle, one sequence above the current
    pointer's. `rollback=True` lets devices move back to an older model version; re-pointing at
    the same bundle renews the expiry."""
    if not _NAME.match(channel):
        raise EdgeError(f"channel {channel!r} is not a plain name. Fix: e.g. 'stable' or 'beta'.")
    now = now or datetime.now(UTC)
    key_name = channel_key(model_name, channel)
    try:
        current = read_pointer(store.get(key_name, max_bytes=MAX_POINTER_BYTES), key.public_key(),
                               model_name, channel, now=None)["sequence"]
    except StoreError:
        current = 0  # the channel's first pointer
    except BundleError:
        current = 0  # not a pointer this key signed: start over (devices keep their highest sequence)
    pointer = {"schema": POINTER_SCHEMA, "model_name": model_name, "channel": channel, "sequence": current + 1,
               "bundle_id": bundle_id, "manifest_sha256": sha256(manifest_body), "rollback": bool(rollback),
               "issued_at": now.isoformat(), "expires_at": (now + valid_for).isoformat()}
    body = json.dumps(pointer, sort_keys=True)
    store.put(key_name, json.dumps({"body": body, "signature": key.sign(body.encode()).hex()}).encode())
    return pointer


def read_pointer(data: bytes, public_key: Ed25519PublicKey, model_name: str, channel: str,
                 now: datetime | None) -> dict:
    """The verified body of a channel pointer; PointerError unless it is signed by the publisher, for
    this model and channel, and (when `now` is given) not expired."""
    what = f"channel {channel!r} of {model_name}"
    try:
        envelope = json.loads(data)
        body, signature = envelope["body"].encode(), bytes.fromhex(envelope["signature"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PointerError(f"{what}: the pointer is not a signed pointer ({type(exc).__name__}). "
                           "Fix: publish the bundle again with this flightdeck version.") from None
    try:
        verify(public_key, signature, body, f"{what}: pointer")
    except BundleError as exc:
        raise PointerError(str(exc)) from None
    pointer = json.loads(body)
    if pointer.get("schema") != POINTER_SCHEMA:
        raise PointerError(f"{what}: pointer schema {pointer.get('schema')} is not supported. Fix: upgrade the agent.")
    if pointer["model_name"] != model_name or pointer["channel"] != channel:
        raise PointerError(f"{what}: the signed pointer is for {pointer['model_name']} channel "
                           f"{pointer['channel']!r} (copied from elsewhere). Fix: publish to this channel.")
    if now is not None and datetime.fromisoformat(pointer["expires_at"]) <= now:
        raise PointerError(f"{what}: the pointer expired at {pointer['expires_at']} (the store is stale or "
                           "frozen). Fix: re-sign the channel (point_channel) before it expires.")
    return pointer


def parse_manifest(body: bytes, signature: bytes, public_key: Ed25519PublicKey, what: str) -> dict:
    """Verify the signature first, then the shape; BundleError names what is wrong."""
    verify(public_key, signature, body, what)
    try:
        manifest = json.loads(body)
    except ValueError as exc:
        raise BundleError(f"{what}: the manifest is not JSON ({exc}). Fix: republish the bundle.") from exc
    missing = [k for k in REQUIRED if k not in manifest] if isinstance(manifest, dict) else list(REQUIRED)
    if missing:
        raise BundleError(f"{what}: the manifest lacks {missing}. Fix: republish with this flightdeck version.")
    if manifest["schema"] != MANIFEST_SCHEMA or manifest["format"] not in FORMATS:
        raise BundleError(f"{what}: manifest schema {manifest['schema']} / format {manifest['format']!r} is "
                          "not supported by this agent. Fix: upgrade the agent.")
    names = list(manifest["files"])
    if manifest["model_file"] not in names or any("/" in n or n.startswith(".") for n in names):
        raise BundleError(f"{what}: the manifest's file list is malformed. Fix: republish the bundle.")
    return manifest


def check_file(manifest: dict, name: str, data: bytes) -> None:
    """BundleError unless `data` has the size and sha256 the manifest gives for `name`."""
    expected = manifest["files"][name]
    if len(data) != expected["size"]:
        raise BundleError(f"{name}: {len(data)} bytes, the manifest says {expected['size']} (truncated or "
                          "padded download). Fix: retry the download.")
    if sha256(data) != expected["sha256"]:
        raise BundleError(f"{name}: sha256 differs from the signed manifest (corrupt or tampered). "
                          "Fix: republish the bundle.")


def read_local_bundle(folder: Path) -> tuple[bytes, bytes, dict[str, bytes]]:
    """(manifest bytes, signature, files) of a bundle folder on disk."""
    manifest = json.loads((folder / MANIFEST).read_bytes())
    return ((folder / MANIFEST).read_bytes(), (folder / SIGNATURE).read_bytes(),
            {name: (folder / name).read_bytes() for name in manifest["files"]})
