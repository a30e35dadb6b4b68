"""Deployments: every gateway endpoint with its route table, live split and per-variant health.

The split, error rate and latency come from the gateway's running sums since the route version
in force (`GET /stats/{endpoint}`), so they describe the current table, not all time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class GatewayReads(Protocol):
    """The read calls of `flightdeck.serving.client.GatewayClient` the cockpit uses."""

    def routes(self) -> dict: ...

    def stats(self, endpoint: str, since_route_version: int = 0, role: str = "live") -> list[dict]: ...

    def history(self, limit: int = 50) -> list[dict]: ...


@dataclass(frozen=True)
class VariantRow:
    name: str
    model: str | None
    reference: str  # "alias champion" or "version 3"
    weight: float | None  # configured share in %, None when the policy has no weights
    served_version: str | None  # the version the running sums saw
    requests: int = 0
    live_share: float | None = None  # % of the endpoint's live requests since the route version
    error_rate: float | None = None
    latency_ms: float | None = None


@dataclass(frozen=True)
class EndpointView:
    name: str
    policy: str
    route_version: int
    variants: list[VariantRow]
    shadow: str | None = None
    fallback: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RouteChange:
    version: int
    author: str
    at: str
    comment: str | None
    changed: list[str]  # endpoints whose spec differs between old and new
    old: dict | None
    new: dict


@dataclass(frozen=True)
class Deployments:
    route_version: int
    author: str | None
    endpoints: list[EndpointView]
    history: list[RouteChange]


def _reference(spec: dict) -> str:
    if spec.get("alias"):
        return f"alias {spec['alias']}"
    return f"version {spec.get('version')}"


def _weights(spec: dict) -> dict[str, float]:
    """Configured traffic share per variant, in %, as the policy reads it."""
    variants = list(spec.get("variants") or {})
    policy = spec.get("policy")
    if policy in ("canary", "ab") and spec.get("weights"):
        total = sum(float(w) for w in spec["weights"].values()) or 1.0
        return {name: 100.0 * float(spec["weights"].get(name, 0)) / total for name in variants}
    if policy == "blue_green":
        return {name: 100.0 if name == spec.get("active") else 0.0 for name in variants}
    if policy == "single" and variants:
        live = spec.get("variant") or variants[0]
        shadow = (spec.get("shadow") or {}).get("variant")
        fallback = (spec.get("fallback") or {}).get("variant")
        live_names = [n for n in variants if n not in (shadow, fallback)] or variants
        live = live if live in live_names else live_names[0]
        return {name: 100.0 if name == live else 0.0 for name in variants}
    return {}


def endpoint_view(name: str, spec: dict, route_version: int, stats: list[dict]) -> EndpointView:
    """One endpoint's table row joined with its running sums (`stats`: `/stats` variants)."""
    weights = _weights(spec)
    by_variant: dict[str, dict] = {}
    for row in stats:
        entry = by_variant.setdefault(row["variant"], {"requests": 0, "errors": 0, "latency_sum": 0.0,
                                                      "versions": set()})
        entry["requests"] += int(row.get("requests") or 0)
        entry["errors"] += int(row.get("errors") or 0)
        entry["latency_sum"] += float(row.get("latency_sum") or 0.0)
        if row.get("model_version") is not None:
            entry["versions"].add(str(row["model_version"]))
    total = sum(v["requests"] for v in by_variant.values())
    rows = []
    for variant, vspec in (spec.get("variants") or {}).items():
        seen = by_variant.get(variant)
        requests = seen["requests"] if seen else 0
        rows.append(VariantRow(
            name=variant, model=vspec.get("model"), reference=_reference(vspec), weight=weights.get(variant),
            served_version=", ".join(sorted(seen["versions"])) if seen and seen["versions"] else None,
            requests=requests,
            live_share=100.0 * requests / total if total else None,
            error_rate=seen["errors"] / requests if requests else None,
            latency_ms=1000.0 * seen["latency_sum"] / requests if requests else None))
    shadow = spec.get("shadow")
    fallback = spec.get("fallback")
    return EndpointView(
        name=name, policy=str(spec.get("policy", "single")), route_version=route_version, variants=rows,
        shadow=f"{shadow['variant']} ({shadow.get('percent', 100)} % mirrored)" if shadow else None,
        fallback=(f"{fallback['variant']} (budget {fallback.get('latency_budget_ms', '–')} ms)"
                  if fallback else None),
        extra={key: spec[key] for key in ("salt", "allow_override", "active", "combine") if key in spec})


def _changed(old: dict | None, new: dict) -> list[str]:
    before = (old or {}).get("endpoints") or {}
    after = (new or {}).get("endpoints") or {}
    return sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))


def read_deployments(gateway: GatewayReads, history_limit: int = 50) -> Deployments:
    """The route table in force, each endpoint with its running sums, and the route history."""
    table = gateway.routes()
    version = int(table.get("version") or 0)
    document = table.get("document") or {"endpoints": {}}
    endpoints = [endpoint_view(name, spec, version, gateway.stats(name, since_route_version=version))
                 for name, spec in sorted((document.get("endpoints") or {}).items())]
    history = [RouteChange(version=int(h["version"]), author=h.get("author") or "?", at=h.get("created_at") or "",
                           comment=h.get("comment"), changed=_changed(h.get("old_document"), h["new_document"]),
                           old=h.get("old_document"), new=h["new_document"])
               for h in gateway.history(limit=history_limit)]
    return Deployments(route_version=version, author=table.get("author"), endpoints=endpoints, history=history)
