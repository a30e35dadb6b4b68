"""Which model version scores each event, re-resolved while the scorer runs.

The stream scorer reads the gateway's route table (an endpoint with policy `single`,
`blue_green`, `canary` or `ab`; default: one variant on the `champion` alias) and picks
the variant per event with the gateway's own `Router`. Canary and A/B assignment hash the
entity id (`unit_bucket`), so a re-delivered event after a crash lands on the same variant.
Every `poll_seconds` the route table is read again and aliases are re-resolved; a version
that changed is downloaded and swapped in between two batches, without stopping.

With each version comes its training reference profile (`reference_profile.json` on the
version's run, as batch monitoring reads it), against which the windows measure per-feature
drift. A version without one (or with one this code cannot read) is scored all the same; its
windows report no feature PSI, and the log says why and what to do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from flightdeck import runtime
from flightdeck.errors import ConfigError, FlightdeckError
from flightdeck.serving.policies import Router, unit_bucket
from flightdeck.serving.routes import RouteTable, default_route_table
from flightdeck.streaming.feature_drift import REFERENCE_PROFILE, FeatureReference

log = logging.getLogger(__name__)

STREAM_POLICIES = ("single", "blue_green", "canary", "ab")


@dataclass(frozen=True)
class LoadedModel:
    """A model version ready to score: the one scoring function's session and input plan."""

    model: runtime.OnnxModel
    plan: runtime.InputPlan
    reference: FeatureReference | None = None  # the version's training reference profile, if it has one


class ModelRouter:
    """Variant per event plus the loaded model of each variant, refreshed by polling.

    `registry` needs `get_version(name, ref)` and `download_onnx(name, ref)`
    (flightdeck.registry.Registry). The reference profile comes from its
    `reference_profile(name, version)` when it has one (StaticModel), else from
    `load_json(<the version's run_id>, "reference_profile.json")` (the MLflow registry).
    `routes` returns the current route table.
    """

    def __init__(self, registry, model_name: str, routes: Callable[[], RouteTable] = default_route_table,
                 endpoint: str | None = None, poll_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry, self.model_name, self._routes = registry, model_name, routes
        self._endpoint, self.poll_seconds, self._clock = endpoint, poll_seconds, clock
        self._loaded: dict[tuple[str, str], LoadedModel] = {}  # (model, version) -> session
        self._variants: dict[str, LoadedModel] = {}
        self._u = 0.0
        self._router: Router | None = None
        self._next_poll = -float("inf")
        self.switches = 0

    def refresh(self, force: bool = False) -> bool:
        """Re-read routes and aliases when due; True when any variant's version changed."""
        now = self._clock()
        if not force and now < self._next_poll:
            return False
        self._next_poll = now + self.poll_seconds
        table = self._routes()
        endpoint = self._endpoint or table.default
        spec = table.endpoints.get(endpoint)
        if spec is None:
            raise ConfigError("endpoint", f"route table has no endpoint {endpoint!r}",
                              f"name one of {sorted(table.endpoints)}")
        if spec.policy not in STREAM_POLICIES:
            raise ConfigError("endpoint", f"{endpoint!r} uses policy {spec.policy!r}",
                              f"stream scoring supports {', '.join(STREAM_POLICIES)}")
        variants = {}
        for name in spec.live_variants:
            variant = spec.variants[name]
            model = variant.model or self.model_name
            found = self.registry.get_version(model, variant.ref)
            version = str(found.version)
            loaded = self._loaded.get((model, version))
            if loaded is None:
                _, onnx_bytes = self.registry.download_onnx(model, version)
                session = runtime.load_session(onnx_bytes)
                loaded = self._loaded[(model, version)] = LoadedModel(
                    runtime.OnnxModel(model, version, session), runtime.InputPlan.of(session),
                    self._reference(model, version, getattr(found, "run_id", None)))
            variants[name] = loaded
        changed = {k: v.model.version for k, v in variants.items()} != {
            k: v.model.version for k, v in self._variants.items()}
        if changed and self._variants:
            self.switches += 1
            log.info("stream models now %s", {k: v.model.version for k, v in variants.items()})
        self._variants = variants
        self._router = Router(endpoint, spec, rng=lambda: self._u)
        self._salt = spec.salt if spec.salt is not None else endpoint
        # Drop sessions no variant uses any more.
        used = {(v.model.name, v.model.version) for v in variants.values()}
        self._loaded = {k: v for k, v in self._loaded.items() if k in used}
        return changed

    def _reference(self, model: str, version: str, run_id: str | None) -> FeatureReference | None:
        """The version's training reference, or None (logged: its windows get no feature PSI)."""
        source = f"model {model} version {version}"
        try:
            own = getattr(self.registry, "reference_profile", None)
            if callable(own):
                profile = own(model, version)
            elif run_id and callable(getattr(self.registry, "load_json", None)):
                profile = self.registry.load_json(run_id, REFERENCE_PROFILE)
            else:
                profile = None
            if profile is None:
                log.warning("%s has no reference profile: its windows get no per-feature drift. Fix: register "
                            "it with train_register (which logs %s), or pass --reference-profile with "
                            "--model-file", source, REFERENCE_PROFILE)
                return None
            return FeatureReference(profile, f"the reference profile of {source}")
        except FlightdeckError as exc:
            log.warning("%s: no per-feature drift (%s)", source, exc)
            return None

    def variant_for(self, entity_id: str) -> str:
        """The variant that scores this entity's event (sticky per entity for canary and A/B)."""
        self._u = unit_bucket(self._salt, entity_id)  # Router's canary draw, made deterministic
        return self._router.choose({}, unit_id=entity_id).variant  # type: ignore[union-attr]

    def model(self, variant: str) -> LoadedModel:
        return self._variants[variant]

    def versions(self) -> dict[str, str]:
        return {k: v.model.version for k, v in self._variants.items()}


class StaticModel:
    """A fixed ONNX file instead of the registry: `--model-file` for demos and tests, with the
    model's training reference profile (`--reference-profile`) when there is one."""

    def __init__(self, onnx_bytes: bytes, version: str, name: str = "file", profile: dict | None = None) -> None:
        self._bytes, self._version, self._name = onnx_bytes, version, name
        if profile is not None:
            FeatureReference(profile)  # a malformed profile given by hand fails here, at start
        self._profile = profile

    def reference_profile(self, name: str, version: str) -> dict | None:
        return self._profile

    def get_version(self, name: str, ref: str):
        return type("V", (), {"version": self._version})()

    def download_onnx(self, name: str, ref: str) -> tuple[str, bytes]:
        return self._version, self._bytes
