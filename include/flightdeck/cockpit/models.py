"""Models: registered versions with their aliases and parity, and which surfaces run each one.

Surfaces: gateway endpoints (a variant naming the version or an alias that points at it), edge
channels (the channel pointer's bundle and its rollout cohort), the batch champion (the version
the latest scored day used) and Lambda aliases when a caller passes their weights.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from flightdeck.delivery.release import AUDIT_TAG
from flightdeck.golden import PARITY_METRIC
from flightdeck.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionView:
    model: str
    version: str
    aliases: list[str]
    created_at: str
    run_id: str | None
    parity: float | None  # max |Δp| of the ONNX export against scikit-learn
    releases: list[dict]  # the release audit records on this version
    surfaces: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ModelView:
    name: str
    aliases: dict[str, str]
    versions: list[VersionView]


def _iso(ms: int | None) -> str:
    if not ms:
        return ""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def gateway_surfaces(routes_document: dict, model: str, aliases: dict[str, str], default_model: str
                     ) -> dict[str, list[str]]:
    """version → ["gateway default/champion (weight 95 %)", ...] for one model."""
    from flightdeck.cockpit.deployments import _weights

    out: dict[str, list[str]] = {}
    for endpoint, spec in sorted(((routes_document or {}).get("endpoints") or {}).items()):
        weights = _weights(spec)
        for variant, vspec in (spec.get("variants") or {}).items():
            if (vspec.get("model") or default_model) != model:
                continue
            version = vspec.get("version") or aliases.get(vspec.get("alias") or "")
            if version is None:
                continue
            share = f" ({weights[variant]:g} %)" if variant in weights else ""
            out.setdefault(str(version), []).append(f"gateway {endpoint}/{variant}{share}")
    return out


def edge_surfaces(store_root: Path, model: str) -> dict[str, list[str]]:
    """version → ["edge channel stable (10 % cohort)"] from a folder edge store's channel pointers.

    Pointers are read, not verified: the signature matters to devices, which check it; the
    cockpit only shows what the store says."""
    out: dict[str, list[str]] = {}
    channels = store_root / model / "channels"
    if not channels.is_dir():
        return out
    for path in sorted(channels.glob("*.json")):
        try:
            pointer = json.loads(json.loads(path.read_text())["body"])
            bundle_id = str(pointer["bundle_id"])
        except (ValueError, KeyError, TypeError, OSError) as exc:
            log.warning("edge channel %s unreadable: %s", path, exc)
            continue
        percent = None
        manifest = store_root / model / "bundles" / bundle_id / "manifest.json"
        version = bundle_id.split("-", 1)[0]
        try:
            body = json.loads(manifest.read_text())
            body = json.loads(body["body"]) if "body" in body else body
            version = str(body.get("model_version", version))
            percent = body.get("rollout_percent")
        except (ValueError, KeyError, TypeError, OSError):
            pass
        cohort = f", {percent:g} % cohort" if isinstance(percent, int | float) else ""
        out.setdefault(version, []).append(f"edge channel {path.stem} ({bundle_id}{cohort})")
    return out


def read_models(registry: Registry, *, routes_document: dict | None, default_model: str,
                batch_champion: dict | None = None, edge_store: Path | None = None,
                lambda_aliases: list[dict] | None = None, max_versions: int = 50) -> list[ModelView]:
    """Every registered model with its newest versions and where each runs.

    `batch_champion`: {"model", "version", "ds"} of the latest scored day; `lambda_aliases`:
    [{"model", "function", "alias", "weights": {version: share}}] when the caller has read them."""
    client = registry.client
    views = []
    for registered in sorted(client.search_registered_models(), key=lambda m: m.name):
        name = registered.name
        aliases = {alias: str(v) for alias, v in (registered.aliases or {}).items()}
        surfaces: dict[str, list[str]] = {}
        for source in (gateway_surfaces(routes_document or {}, name, aliases, default_model),
                       edge_surfaces(edge_store, name) if edge_store else {}):
            for version, items in source.items():
                surfaces.setdefault(version, []).extend(items)
        if batch_champion and batch_champion.get("model") == name:
            surfaces.setdefault(str(batch_champion["version"]), []).append(
                f"batch scoring (latest day {batch_champion.get('ds')})")
        for entry in lambda_aliases or []:
            if entry.get("model") == name:
                for version, share in entry.get("weights", {}).items():
                    surfaces.setdefault(str(version), []).append(
                        f"lambda {entry['function']}:{entry['alias']} ({100 * float(share):g} %, as the last "
                        "serverless_package run deployed it)")
        versions = sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: -int(v.version))
        rows = []
        for v in versions[:max_versions]:
            parity = None
            if v.run_id:
                try:
                    parity = client.get_run(v.run_id).data.metrics.get(PARITY_METRIC)
                except Exception as exc:  # noqa: BLE001 - a deleted run must not blank the page
                    log.warning("run %s of %s v%s unreadable: %s", v.run_id, name, v.version, exc)
            releases = []
            for key, value in sorted((v.tags or {}).items()):
                if key.startswith(f"{AUDIT_TAG}."):
                    try:
                        releases.append(json.loads(value))
                    except ValueError:
                        releases.append({"run_id": key.removeprefix(f"{AUDIT_TAG}."), "outcome": value})
            rows.append(VersionView(
                model=name, version=str(v.version),
                aliases=sorted(a for a, target in aliases.items() if target == str(v.version)),
                created_at=_iso(v.creation_timestamp), run_id=v.run_id, parity=parity, releases=releases,
                surfaces=surfaces.get(str(v.version), [])))
        views.append(ModelView(name=name, aliases=aliases, versions=rows))
    return views
