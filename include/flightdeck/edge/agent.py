"""The device agent: poll the store, download, verify, install atomically, self-test, switch.

Dependencies are a device's: numpy, onnxruntime or ai-edge-litert, cryptography (and boto3
only for an S3 store). No Airflow, TensorFlow, MLflow or pandas.

On disk, under the agent's root:
    models/<bundle id>/   installed, verified bundles (the active one and the previous one)
    incoming/<bundle id>/ a download in progress (discarded on start)
    active.json           {"active": id, "previous": id}: written to a temporary file,
                          fsynced and renamed, so it always names a complete bundle
    state.json            the agent's report: active model, last outcome, rejected bundles

One update: signed channel pointer (this model and channel, not expired, a sequence no lower
than the highest seen, no downgrade unless a signed rollback) → manifest + signature (Ed25519,
the publisher's public key; the manifest the pointer names) → model name / agent version /
file size caps / cohort checks → download each file, checking size and sha256
(retried when short or corrupt) → fsync → rename incoming/<id> to models/<id> → self-test on
the bundle's golden rows → switch active.json → report. A failing self-test discards the new
bundle and the previous model keeps serving (rolled back); the bundle is remembered as
rejected. On start the agent re-verifies the active bundle (signature, hashes, self-test)
and falls back to the previous one if it fails, so a kill at any point leaves a working
model: the old one or the new one, never none.

`FLIGHTDECK_EDGE_AGENT_CRASH_AT=<point>` makes the agent SIGKILL itself at that point of an
update (see CRASH_POINTS): the crash-recovery tests drive every point deterministically.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from flightdeck.edge.bundle import (
    MANIFEST,
    MAX_MANIFEST_BYTES,
    MAX_POINTER_BYTES,
    MAX_SIGNATURE_BYTES,
    PREPROCESS,
    SIGNATURE,
    BundleError,
    bundle_prefix,
    channel_key,
    check_file,
    in_cohort,
    parse_manifest,
    parse_version,
    read_pointer,
    sha256,
)
from flightdeck.edge.errors import EdgeError, PointerError
from flightdeck.edge.keys import load_public_key
from flightdeck.edge.models import load_model
from flightdeck.edge.store import Store, open_store

log = logging.getLogger(__name__)

AGENT_VERSION = "1.0.0"
CRASH_ENV = "FLIGHTDECK_EDGE_AGENT_CRASH_AT"
CRASH_POINTS = ("manifest_verified", "file_partial", "downloaded", "installed", "self_tested",
                "pointer_staged", "switched", "reported")
POINTER = "active.json"
STATE = "state.json"


class SelfTestError(EdgeError):
    """An installed bundle does not load or does not reproduce its golden scores."""


@dataclass(frozen=True)
class AgentConfig:
    """Where the agent keeps its models, where it polls, and who it is."""

    root: Path
    store_uri: str
    model_name: str
    device_id: str
    public_key_path: Path
    channel: str = "stable"
    poll_seconds: float = 60.0
    download_attempts: int = 3
    retry_seconds: float = 0.5
    max_file_bytes: int = 512 * 1024 * 1024  # a bundle declaring a larger file is rejected
    max_rejected: int = 256  # rejected manifests remembered (least recently seen forgotten first)


def _crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes, crash_halfway: bool = False) -> None:
    with open(path, "wb") as handle:
        if crash_halfway:
            handle.write(data[: len(data) // 2])
            handle.flush()
            os.fsync(handle.fileno())
            _crash_point("file_partial")
        handle.write(data[len(data) // 2:] if crash_halfway else data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_atomic(path: Path, data: bytes, crash_point: str | None = None) -> None:
    """Write, fsync, rename, fsync the folder: readers see the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    _write_file(tmp, data)
    if crash_point:
        _crash_point(crash_point)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def self_test(bundle_dir: Path, manifest: dict):
    """Load the bundle's model and score its golden rows; returns the loaded model.

    SelfTestError when it does not load or a score strays past the manifest's tolerance."""
    spec = bundle_dir / PREPROCESS
    try:
        model = load_model(manifest["format"], bundle_dir / manifest["model_file"],
                           spec.read_bytes() if spec.exists() else None)
        golden = json.loads((bundle_dir / manifest["self_test"]["file"]).read_bytes())
        scores = model.score(golden["columns"])
    except Exception as exc:  # any failure to load or run is a failed self-test, never a crash
        raise SelfTestError(f"bundle {manifest['bundle_id']}: the model does not load or run ({exc}). "
                            "Fix: republish a working export.") from exc
    expected = np.asarray(golden["scores"], dtype=np.float64)
    tolerance = float(manifest["self_test"]["tolerance"])
    worst = float(np.max(np.abs(scores - expected))) if len(expected) == len(scores) else float("inf")
    if not worst <= tolerance:
        raise SelfTestError(f"bundle {manifest['bundle_id']}: golden rows scored max |Δp| = {worst:.3g} "
                            f"(tolerance {tolerance:.1g}). Fix: republish; the export and this device disagree.")
    return model


class Agent:
    """One device's agent for one model name."""

    def __init__(self, config: AgentConfig, store: Store | None = None) -> None:
        self.config = config
        self.store = store or open_store(config.store_uri)
        self.public_key = load_public_key(config.public_key_path)
        self.root = Path(config.root)
        self.models_dir = self.root / "models"
        self.incoming_dir = self.root / "incoming"
        self.model = None
        self.active: dict | None = None  # the active bundle's manifest
        self.previous: str | None = None
        self.state = self._load_state()

    # -- reporting ------------------------------------------------------------------------
    def _load_state(self) -> dict:
        try:
            state = json.loads((self.root / STATE).read_bytes())
        except (OSError, ValueError):
            state = {}
        state.setdefault("rejected", {})
        self._trim_rejected(state["rejected"])
        return state

    def _trim_rejected(self, rejected: dict) -> None:
        """Forget the least recently seen rejections beyond `max_rejected` (dicts keep insertion order).

        A forgotten bundle is only checked again, and rejected again, if it is offered again."""
        for manifest_sha in list(rejected)[:max(0, len(rejected) - self.config.max_rejected)]:
            del rejected[manifest_sha]

    def _report(self, outcome: str | None = None, error: str | None = None) -> dict:
        now = datetime.now(UTC).isoformat()
        self.state.update({
            "device_id": self.config.device_id, "agent_version": AGENT_VERSION,
            "model_name": self.config.model_name, "store": self.store.uri, "channel": self.config.channel,
            "status": "serving" if self.active else "no_model",
            "active": None if not self.active else {k: self.active[k] for k in
                                                    ("bundle_id", "model_version", "format", "created_at")},
            "previous": self.previous, "updated_at": now})
        if outcome is not None:
            self.state.update(last_poll_at=now, last_outcome=outcome, last_error=error)
        self.root.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.root / STATE, json.dumps(self.state, indent=1).encode())
        return self.state

    def _reject(self, manifest_sha: str, reason: str) -> None:
        rejected = self.state["rejected"]
        rejected.pop(manifest_sha, None)
        rejected[manifest_sha] = reason
        self._trim_rejected(rejected)
        log.warning("rejected bundle: %s", reason)

    # -- start-up recovery ----------------------------------------------------------------
    def _read_pointer(self) -> dict:
        try:
            return json.loads((self.root / POINTER).read_bytes())
        except (OSError, ValueError):
            return {"active": None, "previous": None}

    def _verify_installed(self, bundle_id: str, manifest_sha: str | None = None):
        """(manifest, model) of an installed bundle whose signature, identity (this model, this bundle
        id, and the manifest `manifest_sha` when given), hashes and self-test hold."""
        folder = self.models_dir / bundle_id
        try:
            body, signature = (folder / MANIFEST).read_bytes(), (folder / SIGNATURE).read_bytes()
        except OSError as exc:
            raise BundleError(f"installed bundle {bundle_id} is incomplete ({exc})") from exc
        manifest = parse_manifest(body, signature, self.public_key, f"installed bundle {bundle_id}")
        if manifest["bundle_id"] != bundle_id or manifest["model_name"] != self.config.model_name:
            raise BundleError(f"installed bundle {bundle_id}: its signed manifest is {manifest['model_name']} "
                              f"{manifest['bundle_id']}, not this bundle. Fix: let the agent reinstall it.")
        if manifest_sha is not None and sha256(body) != manifest_sha:
            raise BundleError(f"installed bundle {bundle_id}: its manifest is not the one the channel pointer "
                              "names. Fix: let the agent reinstall it.")
        for name in manifest["files"]:
            try:
                check_file(manifest, name, (folder / name).read_bytes())
            except OSError as exc:
                raise BundleError(f"installed bundle {bundle_id} lacks {name}") from exc
        return manifest, self_test(folder, manifest)

    def start(self) -> dict:
        """Recover from whatever a kill left behind and load the active model; returns the state."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.models_dir.mkdir(exist_ok=True)
        shutil.rmtree(self.incoming_dir, ignore_errors=True)
        for stale in self.root.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        pointer = self._read_pointer()
        others = sorted((p for p in self.models_dir.iterdir() if p.is_dir()),
                        key=lambda p: p.stat().st_mtime, reverse=True)
        candidates = [c for c in dict.fromkeys([pointer.get("active"), pointer.get("previous"),
                                               *(p.name for p in others)]) if c]
        chosen = None
        for bundle_id in candidates:
            try:
                manifest, model = self._verify_installed(bundle_id)
            except EdgeError as exc:
                log.warning("installed bundle %s is not usable: %s", bundle_id, exc)
                continue
            chosen = bundle_id
            self.active, self.model = manifest, model
            break
        previous = pointer.get("previous") if chosen == pointer.get("active") else None
        if chosen and chosen != pointer.get("active"):
            log.warning("active bundle %s failed verification: rolled back to %s", pointer.get("active"), chosen)
            _write_atomic(self.root / POINTER, json.dumps({"active": chosen, "previous": None}).encode())
        self.previous = previous
        self._collect_garbage()
        outcome = "started" if chosen == pointer.get("active") else f"recovered: serving {chosen or 'nothing'}"
        return self._report(outcome)

    def _collect_garbage(self) -> None:
        keep = {self.active["bundle_id"] if self.active else None, self.previous}
        for folder in self.models_dir.iterdir():
            if folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)

    # -- one update -----------------------------------------------------------------------
    def poll_once(self) -> str:
        """Look for a new bundle and install it if it is for this device; returns the outcome."""
        try:
            outcome, error = self._update(), None
        except PointerError as exc:  # keep serving what we have; a valid pointer may come later
            outcome, error = "refused", str(exc)
            log.warning("channel pointer refused: %s", exc)
        except EdgeError as exc:  # store unreachable, download failed: try again next poll
            outcome, error = "failed", str(exc)
            log.warning("update failed: %s", exc)
        self._report(outcome, error)
        _crash_point("reported")
        return outcome

    def _pointer(self) -> dict:
        """The channel's verified pointer, no older than the newest this device has seen."""
        name, channel = self.config.model_name, self.config.channel
        try:
            data = self.store.get(channel_key(name, channel), max_bytes=MAX_POINTER_BYTES)
        except BundleError as exc:
            raise PointerError(str(exc)) from None
        pointer = read_pointer(data, self.public_key, name, channel, now=datetime.now(UTC))
        seen = int(self.state.get("pointer_sequence", 0))
        if pointer["sequence"] < seen:
            raise PointerError(f"channel {channel!r} of {name}: pointer sequence {pointer['sequence']} is older "
                               f"than {seen}, already seen (a replayed pointer). Fix: publish to the channel again.")
        self.state["pointer_sequence"] = pointer["sequence"]
        return pointer

    def _update(self) -> str:
        name = self.config.model_name
        pointer = self._pointer()
        bundle_id = str(pointer["bundle_id"])
        if self.active and bundle_id == self.active["bundle_id"]:
            return "up_to_date"
        prefix = bundle_prefix(name, bundle_id)
        body = self.store.get(f"{prefix}/{MANIFEST}", max_bytes=MAX_MANIFEST_BYTES)
        signature = self.store.get(f"{prefix}/{SIGNATURE}", max_bytes=MAX_SIGNATURE_BYTES)
        manifest_sha = sha256(body)
        if manifest_sha in self.state["rejected"]:
            self.state["rejected"][manifest_sha] = self.state["rejected"].pop(manifest_sha)  # recently seen
            return "skipped: rejected before"
        try:
            manifest = parse_manifest(body, signature, self.public_key, f"bundle {bundle_id}")
        except BundleError as exc:
            self._reject(manifest_sha, str(exc))
            return "rejected"
        if manifest_sha != pointer["manifest_sha256"]:
            # also seen mid-publish (new manifest, old pointer): not the bundle's fault, try again later
            raise EdgeError(f"bundle {bundle_id}: the manifest in the store is not the one the channel pointer "
                            "names. Fix: wait for the publish to finish, or publish to the channel again.")
        try:
            self._check_manifest(manifest, bundle_id)
        except BundleError as exc:
            self._reject(manifest_sha, str(exc))
            return "rejected"
        if self.active and not pointer["rollback"] and \
                parse_version(manifest["model_version"]) < parse_version(self.active["model_version"]):
            raise PointerError(f"channel {self.config.channel!r} of {name}: the pointer moves from version "
                               f"{self.active['model_version']} back to {manifest['model_version']} without a "
                               "signed rollback. Fix: publish it as a rollback (point_channel rollback=True).")
        _crash_point("manifest_verified")
        if not in_cohort(self.config.device_id, bundle_id, manifest["rollout_percent"]):
            return "not_in_cohort"
        try:
            self._download(manifest, prefix)
        except _Tampered as exc:
            self._reject(manifest_sha, str(exc))
            return "rejected"
        self._install(bundle_id)
        _crash_point("installed")
        try:
            manifest, model = self._verify_installed(bundle_id, manifest_sha)
        except EdgeError as exc:
            shutil.rmtree(self.models_dir / bundle_id, ignore_errors=True)
            self._reject(manifest_sha, str(exc))
            return "rolled_back"
        _crash_point("self_tested")
        self._switch(manifest, model)
        return "updated"

    def _check_manifest(self, manifest: dict, bundle_id: str) -> None:
        """BundleError unless the signed manifest is this bundle, for this agent, within the size cap."""
        if manifest["model_name"] != self.config.model_name or manifest["bundle_id"] != bundle_id:
            raise BundleError(f"bundle {bundle_id}: the signed manifest is for {manifest['model_name']} "
                              f"{manifest['bundle_id']} (replayed under another name). Fix: republish.")
        if parse_version(manifest["min_agent_version"]) > parse_version(AGENT_VERSION):
            raise BundleError(f"bundle {bundle_id} needs agent {manifest['min_agent_version']}, this is "
                              f"{AGENT_VERSION}. Fix: upgrade the agent.")
        sizes = {n: f.get("size") for n, f in manifest["files"].items()}
        if any(type(v) is not int or not 0 <= v <= self.config.max_file_bytes for v in sizes.values()):
            raise BundleError(f"bundle {bundle_id}: a file is declared larger than this agent's max_file_bytes "
                              f"({self.config.max_file_bytes}) or without a size: {sizes}. Fix: publish a "
                              "smaller export, or raise max_file_bytes on devices that can hold it.")

    def _download(self, manifest: dict, prefix: str) -> None:
        folder = self.incoming_dir / manifest["bundle_id"]
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name in [*manifest["files"], MANIFEST, SIGNATURE]:
            data = self._fetch(manifest, prefix, name)
            _write_file(folder / name, data, crash_halfway=(name == manifest["model_file"]
                                                              and os.environ.get(CRASH_ENV) == "file_partial"))
        _fsync_dir(folder)
        _crash_point("downloaded")

    def _fetch(self, manifest: dict, prefix: str, name: str) -> bytes:
        """One file, checked against the manifest; short or corrupt downloads are retried."""
        last: EdgeError | None = None
        for attempt in range(1, self.config.download_attempts + 1):
            try:
                if name in (MANIFEST, SIGNATURE):
                    return self.store.get(f"{prefix}/{name}", max_bytes=MAX_MANIFEST_BYTES)
                data = self.store.get(f"{prefix}/{name}", max_bytes=manifest["files"][name]["size"])
                check_file(manifest, name, data)
                return data
            except EdgeError as exc:
                last = exc
                log.warning("download of %s, attempt %d/%d: %s", name, attempt, self.config.download_attempts, exc)
                if attempt < self.config.download_attempts:
                    time.sleep(self.config.retry_seconds)
        expected = manifest["files"].get(name, {})
        if isinstance(last, BundleError) and "sha256" in str(last) and expected:
            raise _Tampered(str(last))  # full length, wrong bytes every time: the store holds bad bytes
        raise EdgeError(f"{name}: download failed {self.config.download_attempts} times: {last}")

    def _install(self, bundle_id: str) -> None:
        target = self.models_dir / bundle_id
        shutil.rmtree(target, ignore_errors=True)  # a leftover of an earlier, interrupted install
        os.rename(self.incoming_dir / bundle_id, target)
        _fsync_dir(self.models_dir)

    def _switch(self, manifest: dict, model) -> None:
        old = self.active["bundle_id"] if self.active else None
        pointer = {"active": manifest["bundle_id"], "previous": old}
        _write_atomic(self.root / POINTER, json.dumps(pointer).encode(), crash_point="pointer_staged")
        _crash_point("switched")
        self.active, self.model, self.previous = manifest, model, old
        self._collect_garbage()
        log.info("switched to bundle %s (previous %s)", manifest["bundle_id"], old)

    # -- serving and the loop -------------------------------------------------------------
    def score(self, columns) -> np.ndarray:
        """Score rows (column lists) with the active model."""
        if self.model is None:
            raise EdgeError("the agent has no model installed yet. Fix: publish a bundle this device is in the "
                            "cohort of, and let the agent poll.")
        return self.model.score(columns)

    def run(self, stop: threading.Event | None = None, polls: int | None = None) -> dict:
        """Recover, then poll every `poll_seconds` until `stop` is set (or `polls` polls)."""
        stop = stop or threading.Event()
        self.start()
        done = 0
        while not stop.is_set():
            self.poll_once()
            done += 1
            if polls is not None and done >= polls:
                break
            stop.wait(self.config.poll_seconds)
        return self.state


class _Tampered(BundleError):
    """A file whose bytes disagree with the signed manifest on every attempt."""
