"""The gateway's core, shared by every transport (REST, WebSocket, gRPC).

One `Gateway` per worker process. It holds the compiled route table in force (swapped
atomically: a request uses the table it started with), scores with ONNX Runtime in the
event loop for small requests, mirrors shadow traffic to a background task, and records
every answer in Prometheus metrics, running sums for the gates, and the prediction log
(a bounded queue drained by a writer thread: recording never blocks a request).

Workers agree through the database: the route store has the table and its version; each
worker swaps in a new table once its models are loaded, so a route change reaches every
worker without a restart and without failing a request. On PostgreSQL the store pushes each
new version (LISTEN/NOTIFY) and workers switch within milliseconds; every worker also polls
the version, the only way on SQLite and the fallback while the push is down. Each worker
records the version it serves (`WorkerRegistry`), so `wait_for_routes` can tell when all of
them have switched: a route change that waits for it is in force everywhere once answered.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hashlib
import itertools
import logging
import os
import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import orjson

from flightdeck.config import Settings
from flightdeck.errors import FlightdeckError
from flightdeck.serving import db
from flightdeck.serving.cache import cache_key, make_cache
from flightdeck.serving.errors import (
    NotReadyError,
    RequestError,
    RouteTableError,
    UnknownEndpointError,
    VariantFailedError,
    VersionConflictError,
)
from flightdeck.serving.metrics import FLUSH_SECONDS, GatewayMetrics
from flightdeck.serving.models import ModelPool, ServedModel, TensorSpec
from flightdeck.serving.policies import CircuitBreaker, Router, override_disabled
from flightdeck.serving.predlog import PredictionLogWriter, PredictionRecord
from flightdeck.serving.routes import (
    EndpointSpec,
    Faults,
    RouteTable,
    default_route_table,
    load_route_file,
    parse_route_table,
)
from flightdeck.serving.stats import RunningStats, StatsKey, StatsStore, new_worker_id
from flightdeck.serving.store import (
    RouteListener,
    RouteStore,
    StoredRoutes,
    WorkerRegistry,
    WorkerState,
)

log = logging.getLogger(__name__)

# Above this many rows, scoring moves to a thread so one big request does not stall the loop.
INLINE_ROWS = 64
# Threads for the blocking work that is not live scoring (see Gateway.in_background).
BACKGROUND_THREADS = 2
# At most this many mirrored requests are scored in one model call.
SHADOW_BATCH = 64
# Mirrored requests wait for their shadow with their model inputs decoded: besides
# `shadow_queue_size` requests, the queue holds at most `shadow_queue_bytes` of them (counted as
# the JSON text of the inputs, the measure the prediction log's byte bound uses). Past it, a
# mirrored request is dropped and counted in flightdeck_shadow_dropped, like one over the row bound.


# A worker whose heartbeat (every stats_flush_seconds) is older than this many flushes, and at least
# MIN_LIVE_S, counts as gone: a killed worker cannot hold a route change's wait for longer.
LIVE_FLUSHES = 5
MIN_LIVE_S = 5.0
# How often a worker whose push connection is down tries to open it again.
LISTEN_RETRY_S = 2.0
# While the push is up, the poll (its fallback) looks this much less often.
POLL_WHILE_PUSHED = 10


class InjectedFault(Exception):
    """A failure injected by a variant's `faults.error_rate` (drills and tests)."""


class RoutePropagationError(RequestError):
    """A route version is stored but some live workers still serve an older one after the wait."""

    status = 504


class UnknownRouteVersionError(RequestError):
    """A wait for a route version that was never stored."""

    status = 404


@dataclass(frozen=True)
class Prediction:
    """An answer: scores plus who produced them (variant, model version, route version).

    `request_id` is the gateway's own (unique); `client_request_id` is the id the caller sent.
    `forced`: an admin chose the variant (or model version) instead of the endpoint's policy."""

    request_id: str
    endpoint: str
    scores: np.ndarray
    variant: str
    model_version: str
    route_version: int
    cached: bool = False
    fallback: bool = False
    row_variants: list[str] | None = None  # conditional routing that split the rows
    client_request_id: str | None = None
    forced: bool = False


@dataclass
class Variant:
    name: str
    model: ServedModel
    faults: Faults | None


@dataclass
class Endpoint:
    name: str
    spec: EndpointSpec
    router: Router
    variants: dict[str, Variant]
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)
    # Every variant's model inputs, in name order: the only columns logged (a caller's extra columns are not).
    input_names: tuple[str, ...] = ()

    @property
    def fallback(self) -> Variant | None:
        return self.variants[self.spec.fallback.variant] if self.spec.fallback else None


@dataclass
class CompiledRoutes:
    version: int
    table: RouteTable
    endpoints: dict[str, Endpoint]
    resolved: dict[tuple[str, str], str]  # (model, alias or version) -> version


@dataclass(frozen=True)
class EndpointMetadata:
    name: str
    versions: list[str]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    platform: str = "onnxruntime_onnx"


@dataclass
class _Answer:
    """Scores of the rows one variant answered (all rows unless conditional routing split them)."""

    variant: str
    model_version: str
    scores: np.ndarray
    rows: list[int] | None = None
    error: bool = False
    fallback: bool = False
    cached: bool = False


@dataclass
class _Shadow:
    endpoint: Endpoint
    variant: Variant
    columns: dict
    live_scores: np.ndarray
    request_id: str
    unit_id: str | None
    route_version: int
    digests: list[str]
    size: int = 0  # estimated bytes held (see Settings.shadow_queue_bytes)


class Gateway:
    """Routes, scores and records. Start with `await start()`, stop with `await stop()`."""

    def __init__(self, settings: Settings, pool: ModelPool, *, metrics: GatewayMetrics | None = None,
                 rng: Callable[[], float] | None = None, push: bool = True) -> None:
        settings.check_admin_tokens()
        self.settings = settings
        self.pool = pool
        self.metrics = metrics or GatewayMetrics()
        self.worker_id = new_worker_id()
        self.engine = db.engine_for(settings.gateway_db_url, serving=True)
        self.route_store = RouteStore(self.engine)
        self.stats_store = StatsStore(self.engine)
        self.workers = WorkerRegistry(self.engine, max(MIN_LIVE_S, LIVE_FLUSHES * settings.stats_flush_seconds))
        # Route versions pushed by the database (PostgreSQL); `push=False` leaves only the poll.
        self._push = push and RouteListener.supported(self.engine)
        self._pushed = asyncio.Event()
        self._listening = False  # the push is connected: the poll may look less often
        self.stats = RunningStats()
        self.predlog = PredictionLogWriter(self.engine, settings.predlog_queue_size,
                                           settings.predlog_batch_size, settings.predlog_flush_seconds,
                                           queue_bytes=settings.predlog_queue_bytes)
        self.cache = make_cache(settings)
        # Weighted routing, shadow sampling and drill faults draw from this: seeded by `routing_seed`
        # (each worker starts the same sequence), else the process's unseeded generator.
        self._rng = rng or (random.Random(settings.routing_seed).random if settings.routing_seed is not None
                            else random.random)
        self._routes: CompiledRoutes | None = None
        self._route_error: str | None = None
        self._shadow_queue: asyncio.Queue[_Shadow] = asyncio.Queue(settings.shadow_queue_size)
        self._shadow_bytes = 0  # estimated bytes of the mirrored requests in the queue
        self._shadow_bytes_limit = settings.shadow_queue_bytes
        self._tasks: list[asyncio.Task] = []
        self._compile_lock = asyncio.Lock()
        # Blocking work other than live scoring (database reads and writes, shadow scoring, model
        # loading) runs here, so a slow /stats query or a shadow backlog never takes the default
        # executor's threads from large scoring requests.
        self._background = ThreadPoolExecutor(BACKGROUND_THREADS, thread_name_prefix="gateway-background")

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Check the schema, load the route table in force, start the background loops."""
        db.check_schema(self.engine)
        self.predlog.start()
        await self.refresh_routes()
        loops = (self._poll_routes, self._publish_stats, self._refresh_aliases, self._drain_shadow,
                 self._flush_metrics)
        if self._push:
            loops += (self._follow_pushes,)
        self._tasks = [asyncio.create_task(loop(), name=loop.__name__) for loop in loops]
        # Everything loaded so far (MLflow, pandas, models) lives as long as the worker: keep it
        # out of the garbage collector's full passes, which otherwise stall requests for ms.
        gc.freeze()
        sys.setswitchinterval(0.0005)

    async def stop(self) -> None:
        """Stop the loops, publish the last sums, flush the prediction log."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.metrics.flush()
        try:
            await self.in_background(self._publish_once)
            await self.in_background(self.workers.forget, self.worker_id)
        except Exception:  # the database may be gone at shutdown; the log drain below still runs
            log.exception("could not publish the last running sums")
        await self.in_background(self.predlog.close)
        self._background.shutdown(wait=False)
        if self.cache is not None:
            await self.cache.close()

    async def in_background(self, func, *args):
        """`func(*args)` on the gateway's background threads (anything blocking but live scoring)."""
        return await asyncio.get_running_loop().run_in_executor(self._background, functools.partial(func, *args))

    def is_live(self) -> bool:
        return True

    def is_ready(self) -> bool:
        return self._routes is not None

    @property
    def route_version(self) -> int:
        return self._routes.version if self._routes else 0

    @property
    def default_endpoint(self) -> str:
        return self._current().table.default

    def _current(self) -> CompiledRoutes:
        routes = self._routes
        if routes is None:
            raise NotReadyError(f"the gateway has no route table loaded yet ({self._route_error or 'starting'}). "
                                "Fix: wait for /v2/health/ready, or register a model / fix the route table.")
        return routes

    def _endpoint(self, name: str, routes: CompiledRoutes | None = None) -> Endpoint:
        routes = routes or self._current()
        endpoint = routes.endpoints.get(name)
        if endpoint is None:
            raise UnknownEndpointError(f"no endpoint {name!r}; endpoints are {sorted(routes.endpoints)}. "
                                       "Fix: use one of those names or add it to the route table.",
                                       field="endpoint")
        return endpoint

    def endpoint_ready(self, name: str) -> bool:
        self._endpoint(name)
        return True

    def endpoint_metadata(self, name: str) -> EndpointMetadata:
        endpoint = self._endpoint(name)
        first = next(iter(endpoint.variants.values())).model
        return EndpointMetadata(name=name, versions=sorted({v.model.version for v in endpoint.variants.values()}),
                                inputs=first.inputs, outputs=[TensorSpec("probabilities", "FP64", [-1])])

    # ---- route tables ----------------------------------------------------------------------
    async def refresh_routes(self) -> bool:
        """Load the stored table if its version differs from ours (seeding one if the store is empty)."""
        async with self._compile_lock:
            stored = await self.in_background(ensure_route_table, self.route_store, self.settings)
            if self._routes is not None and stored.version == self._routes.version:
                return False
            try:
                compiled = await self.in_background(self._compile, stored.version, parse_route_table(stored.document))
            except FlightdeckError as exc:
                self._route_error = f"route table v{stored.version}: {exc}"
                log.error("cannot serve %s", self._route_error)
                return False
            self._install(compiled)
        await self._announce(compiled.version)
        return True

    async def _announce(self, version: int) -> None:
        """Record that this worker serves route `version` (what `wait_for_routes` waits on)."""
        try:
            await self.in_background(self.workers.announce, self.worker_id, version)
        except Exception:  # the heartbeat announces it again; the table is in force regardless
            log.exception("could not record route table v%s as served", version)

    def _compile(self, version: int, table: RouteTable, resolved_before: dict | None = None) -> CompiledRoutes:
        """Load every model the table names (blocking) and build routers and breakers."""
        default_model = self.settings.model_name
        resolved: dict[tuple[str, str], str] = {}
        endpoints: dict[str, Endpoint] = {}
        for name, spec in table.endpoints.items():
            variants: dict[str, Variant] = {}
            for variant_name, variant in spec.variants.items():
                model_name = variant.model or default_model
                model = self.pool.load(model_name, variant.ref)
                resolved[(model_name, variant.ref)] = model.version
                variants[variant_name] = Variant(variant_name, model, variant.faults)
            endpoint = Endpoint(name, spec, Router(name, spec, self._rng), variants,
                                input_names=tuple(sorted({t.name for v in variants.values() for t in v.model.inputs})))
            if spec.fallback:
                endpoint.breakers = {v: CircuitBreaker(spec.fallback.failure_threshold, spec.fallback.reset_seconds)
                                     for v in variants if v != spec.fallback.variant}
            endpoints[name] = endpoint
        return CompiledRoutes(version, table, endpoints, resolved)

    def _install(self, compiled: CompiledRoutes) -> None:
        previous = self._routes
        self._routes = compiled  # one assignment: requests in flight keep the table they started with
        self._route_error = None
        self.metrics.route_version.set(compiled.version)
        self.pool.retain({(v.model.name, v.model.version) for e in compiled.endpoints.values()
                          for v in e.variants.values()})
        log.info("route table v%s in force (was v%s)", compiled.version, previous.version if previous else None)

    async def replace_routes(self, document: dict, author: str, expected_version: int | None = None,
                             comment: str | None = None) -> StoredRoutes:
        """Validate, load its models, store as the next version, and switch this worker to it.

        A table naming a model that cannot be loaded is refused before it is stored, so a
        typo never reaches the other workers.
        """
        table = parse_route_table(document)
        try:
            compiled = await self.in_background(self._compile, 0, table)
        except FlightdeckError as exc:
            raise RouteTableError(f"route table refused: {exc}") from None
        stored = await self.in_background(self.route_store.replace, table.model_dump(exclude_none=True),
                                         author, expected_version, comment)
        async with self._compile_lock:  # the table just compiled is the one stored: no second load
            installed = self._routes is None or self._routes.version < stored.version
            if installed:
                compiled.version = stored.version
                self._install(compiled)
        if installed:
            await self._announce(stored.version)
        return stored

    async def wait_for_routes(self, version: int, timeout_s: float) -> list[WorkerState]:
        """Return the live workers once every one serves route `version` (or a newer one);
        RoutePropagationError naming the laggards when `timeout_s` passes first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        current = await self.in_background(self.route_store.current_version)
        if not 0 < version <= current:
            raise UnknownRouteVersionError(f"there is no route table version {version} (the newest is {current}). "
                                           "Fix: wait for a version that PUT /admin/routes returned.",
                                           field="version")
        delay = 0.001
        while True:
            if not await self.in_background(self.workers.lagging, version):
                return await self.in_background(self.workers.live)
            if loop.time() >= deadline:
                lagging = await self.in_background(self.workers.lagging, version)
                if not lagging:
                    return await self.in_background(self.workers.live)
                names = ", ".join(f"{w.worker_id} (v{w.route_version})" for w in lagging)
                raise RoutePropagationError(
                    f"route table v{version} is stored, but after {timeout_s:g} s these workers still serve an "
                    f"older one: {names}. Fix: look at those workers' logs (a model that fails to load keeps "
                    f"the old table); GET /admin/routes/wait?version={version} waits again.", field="version")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.005)

    async def _follow_pushes(self) -> None:
        """Switch as soon as the database announces a newer route version (see RouteListener)."""
        def pushed(version: int) -> None:
            if version != self.route_version:
                self._pushed.set()

        def listening() -> None:
            self._listening = True
            self._pushed.set()  # look once: a version may have been stored while nobody listened

        listener = RouteListener(self.engine, pushed)
        applying = asyncio.create_task(self._apply_pushes(), name="apply_pushes")
        try:
            while True:
                try:
                    await listener.run(on_listening=listening)
                except Exception as exc:
                    log.warning("not listening for route changes (%s); polling every %s s until reconnected",
                                exc, self.settings.route_poll_seconds)
                self._listening = False
                await asyncio.sleep(LISTEN_RETRY_S)
        finally:
            self._listening = False
            applying.cancel()

    async def _apply_pushes(self) -> None:
        while True:
            await self._pushed.wait()
            self._pushed.clear()
            try:
                await self.refresh_routes()
            except Exception:  # a database blip must not end the loop; the poll is still there
                log.exception("route refresh after a push failed; serving route table v%s", self.route_version)

    async def _poll_routes(self) -> None:
        for tick in itertools.count(1):
            await asyncio.sleep(self.settings.route_poll_seconds)
            if self._listening and tick % POLL_WHILE_PUSHED:
                continue  # the push brings changes; the poll is the fallback
            try:
                if self._routes is None or await self.in_background(self.route_store.current_version) \
                        != self._routes.version:
                    await self.refresh_routes()
            except Exception:  # a database blip must not end the loop
                log.exception("route poll failed; serving route table v%s", self.route_version)

    async def _refresh_aliases(self) -> None:
        """Follow aliases (champion, challenger) as promotions move them, without a new route version."""
        while True:
            await asyncio.sleep(self.settings.alias_refresh_seconds)
            routes = self._routes
            if routes is None:
                continue
            try:
                async with self._compile_lock:
                    moved = await self.in_background(self._aliases_moved, routes)
                    if moved and self._routes is routes:
                        self._install(await self.in_background(self._compile, routes.version, routes.table))
            except Exception:
                log.exception("alias refresh failed; keeping the loaded versions")

    def _aliases_moved(self, routes: CompiledRoutes) -> bool:
        return any(not ref.isdigit() and self.pool.resolve(model, ref) != version
                   for (model, ref), version in routes.resolved.items())

    # ---- prediction ------------------------------------------------------------------------
    async def predict(self, endpoint: str, columns: dict[str, list], *, unit_id: str | None = None,
                      override: str | None = None, version: str | None = None,
                      client_request_id: str | None = None) -> Prediction:
        """Route, score and record one request. RequestError subclasses are the caller's fault.

        `override` / `version` force a variant: transports pass them only for admins. A forced
        request is flagged in the prediction log, not mirrored to a shadow, and left out of the
        running sums and the per-variant Prometheus families the release gates read."""
        started = time.perf_counter()
        routes = self._current()
        forced = False
        try:
            ep = self._endpoint(endpoint, routes)  # the table this request started with, throughout
            if version is not None:
                if not ep.spec.allow_override:
                    raise override_disabled(ep.name, f"model version {version!r}", "version")
                override = self._variant_for_version(ep, version)
            choice = ep.router.choose(columns, unit_id, override)
            forced = choice.overridden
            if choice.variant is not None:
                answers = [await self._answer(ep, ep.variants[choice.variant], columns)]
            elif choice.members:
                answers = [await self._ensemble(ep, choice.members, columns)]
            else:
                answers = [await self._answer(ep, ep.variants[name], _take(columns, rows), rows)
                           for name, rows in choice.rows.items()]
        except RequestError as exc:
            # Callers choose the endpoint name: never let them mint new label values.
            label = endpoint if endpoint in routes.endpoints else "(unknown)"
            self.metrics.child(self.metrics.rejected, label, str(exc.status)).inc()
            if isinstance(exc, VariantFailedError) and exc.variant is not None and not forced:
                # A failure with no fallback is the variant's error: the release gates must see it.
                self.stats.record(StatsKey(endpoint, exc.variant, exc.model_version, routes.version, "live"),
                                  time.perf_counter() - started, _NO_SCORES, error=True)
            raise
        latency = time.perf_counter() - started
        # The gateway's own id: the caller's may be reused or shared, and shadow rows join on this one.
        request_id = _next_request_id()
        scores = _assemble(answers, len(next(iter(columns.values()))))
        inputs, digests = _row_inputs(columns, ep.input_names)
        for answer in answers:
            self._record(ep, answer, routes.version, latency, request_id, unit_id, digests, "live", inputs,
                         forced=forced, client_request_id=client_request_id)
        if choice.variant is not None and not forced:
            self._mirror(ep, columns, scores, request_id, unit_id, routes.version, digests, answers[0].variant,
                         inputs)
        single = len(answers) == 1
        return Prediction(
            request_id=request_id, endpoint=endpoint, scores=scores,
            variant=answers[0].variant if single else "conditional",
            model_version=answers[0].model_version if single else "+".join(a.model_version for a in answers),
            route_version=routes.version, cached=all(a.cached for a in answers),
            fallback=any(a.fallback for a in answers),
            row_variants=None if single else _row_labels(answers, len(scores)),
            client_request_id=client_request_id, forced=forced)

    def _variant_for_version(self, ep: Endpoint, version: str) -> str:
        for name, variant in ep.variants.items():
            if variant.model.version == version:
                return name
        raise UnknownEndpointError(f"endpoint {ep.name!r} serves no model version {version!r} "
                                   f"(serves {sorted(v.model.version for v in ep.variants.values())}). "
                                   "Fix: ask for a served version or none.", field="version")

    async def _answer(self, ep: Endpoint, variant: Variant, columns: dict, rows: list[int] | None = None) -> _Answer:
        """One variant's scores, from the cache, the model, or the fallback when the model fails."""
        feeds = variant.model.feeds(columns)  # validates: InvalidInputError is the caller's
        key = None
        # A variant with injected faults is never answered from the cache: a drill must hit the faults.
        if self.cache is not None and variant.faults is None:
            key = cache_key(variant.model.key, _request_digest(columns))
            hit = await self.cache.get(key)
            self.metrics.child(self.metrics.cache_hits if hit is not None else self.metrics.cache_misses,
                               ep.name, variant.name, variant.model.version).inc()
            if hit is not None:
                return _Answer(variant.name, variant.model.version, hit, rows, cached=True)
        fallback = ep.fallback
        if fallback is None or fallback is variant:
            try:
                scores = await self._run(variant, feeds)
            except Exception as exc:
                self._failed(ep, variant, exc)
                raise VariantFailedError(f"variant {variant.name!r} of endpoint {ep.name!r} failed: {exc}. "
                                         "Fix: retry; configure a fallback to answer for it.",
                                         variant.name, variant.model.version) from None
        else:
            breaker = ep.breakers[variant.name]
            scores = None
            if breaker.allow():
                try:
                    async with asyncio.timeout(ep.spec.fallback.latency_budget_ms / 1000):
                        scores = await self._run(variant, feeds)
                    breaker.success()
                except Exception as exc:  # TimeoutError included: slow counts as failed
                    breaker.failure()
                    self._failed(ep, variant, exc)
            if scores is None:
                self.metrics.child(self.metrics.fallbacks, ep.name, variant.name, variant.model.version).inc()
                fallback_feeds = feeds if fallback.model.session is variant.model.session else fallback.model.feeds(columns)
                try:
                    scores = await self._run(fallback, fallback_feeds)
                except Exception as exc:
                    self._failed(ep, fallback, exc)
                    raise VariantFailedError(f"variant {variant.name!r} and its fallback {fallback.name!r} of "
                                             f"endpoint {ep.name!r} both failed: {exc}. Fix: retry.") from None
                # Intent to treat: the request stays the assigned variant's, answered by the fallback's model.
                return _Answer(variant.name, fallback.model.version, scores, rows, error=True, fallback=True)
        if key is not None:
            await self.cache.set(key, scores)
        return _Answer(variant.name, variant.model.version, scores, rows)

    def _failed(self, ep: Endpoint, variant: Variant, exc: Exception) -> None:
        kind = "timed out" if isinstance(exc, TimeoutError) else f"failed: {exc!r}"
        log.warning("endpoint %s variant %s %s", ep.name, variant.name, kind)
        self.metrics.child(self.metrics.errors, ep.name, variant.name, variant.model.version).inc()

    async def _run(self, variant: Variant, feeds: dict[str, np.ndarray]) -> np.ndarray:
        faults = variant.faults
        if faults is not None:
            if faults.latency_ms:
                await asyncio.sleep(faults.latency_ms / 1000)
            if faults.error_rate and self._rng() < faults.error_rate:
                raise InjectedFault(f"injected failure in variant {variant.name!r}")
        if len(next(iter(feeds.values()))) > INLINE_ROWS:
            return await asyncio.to_thread(variant.model.score, feeds)
        return variant.model.score(feeds)

    async def _ensemble(self, ep: Endpoint, members: tuple[str, ...], columns: dict) -> _Answer:
        answers = [await self._answer(ep, ep.variants[name], columns) for name in members]
        stacked = np.vstack([a.scores for a in answers])
        if ep.spec.ensemble and ep.spec.ensemble.method == "vote":
            # Majority vote: the score is the share of members voting positive.
            scores = (stacked >= self.settings.decision_threshold).mean(axis=0)
        else:
            scores = stacked.mean(axis=0)
        version = "+".join(f"{a.variant}:{a.model_version}" for a in answers)
        return _Answer("ensemble", version, scores, cached=all(a.cached for a in answers),
                       fallback=any(a.fallback for a in answers), error=any(a.error for a in answers))

    # ---- recording -------------------------------------------------------------------------
    def _record(self, ep: Endpoint, answer: _Answer, route_version: int, latency: float, request_id: str,
                unit_id: str | None, digests: list[str], role: str, inputs: list[str] | None = None,
                disagreements: int = 0, *, forced: bool = False, client_request_id: str | None = None) -> None:
        scores = answer.scores.tolist()
        if forced:
            self.metrics.child(self.metrics.forced, ep.name, answer.variant, answer.model_version).inc()
        else:  # what the gates read: a forced request is no evidence about the policy
            if role == "live":
                requests, latencies, score_histogram = self.metrics.answered(ep.name, answer.variant,
                                                                             answer.model_version)
                requests.inc()
                latencies.observe(latency)
                score_histogram.observe_many(scores)
            self.stats.record(StatsKey(ep.name, answer.variant, answer.model_version, route_version, role),
                              latency, answer.scores, answer.error, disagreements, values=scores)
        latency_ms = latency * 1000
        # created_at None: the log stamps the time of submission, once for all of this answer's rows.
        if answer.rows is None and len(scores) == 1:  # a single row, the common case
            self.predlog.submit((PredictionRecord(
                request_id, 0, unit_id, ep.name, answer.variant, answer.model_version, route_version, role,
                digests[0], scores[0], latency_ms, answer.fallback, None,
                inputs[0] if inputs is not None else None, forced, client_request_id),))
            return
        rows = answer.rows if answer.rows is not None else range(len(scores))
        self.predlog.submit(tuple(
            PredictionRecord(request_id, row, unit_id, ep.name, answer.variant, answer.model_version, route_version,
                             role, digests[row], score, latency_ms, answer.fallback, None,
                             inputs[row] if inputs is not None else None, forced, client_request_id)
            for row, score in zip(rows, scores, strict=True)))

    def _mirror(self, ep: Endpoint, columns: dict, live_scores: np.ndarray, request_id: str,
                unit_id: str | None, route_version: int, digests: list[str], answered: str,
                inputs: list[str]) -> None:
        """Queue the request for its shadow variant, holding only the model input columns (not a
        caller's extras); dropped (and counted) when the queue is full by requests or by bytes."""
        name = ep.router.shadow()
        if name is None or name == answered:
            return
        size = sum(map(len, inputs))
        if self._shadow_bytes + size > self._shadow_bytes_limit:
            self.metrics.child(self.metrics.shadow_dropped, ep.name).inc()
            return
        held = {n: columns[n] for n in ep.input_names if n in columns}
        try:
            self._shadow_queue.put_nowait(_Shadow(ep, ep.variants[name], held, live_scores, request_id,
                                                  unit_id, route_version, digests, size))
        except asyncio.QueueFull:
            self.metrics.child(self.metrics.shadow_dropped, ep.name).inc()
            return
        self._shadow_bytes += size

    async def _drain_shadow(self) -> None:
        """Score mirrored requests after their live answers went out; results are only recorded.

        Whatever waits in the queue is taken at once, and the jobs of one variant are scored in
        one model call (one row or fifty cost about the same), then recorded one by one."""
        queue = self._shadow_queue
        while True:
            jobs = [await queue.get()]
            while len(jobs) < SHADOW_BATCH and not queue.empty():
                jobs.append(queue.get_nowait())
            self._shadow_bytes -= sum(job.size for job in jobs)
            groups: dict[int, list[_Shadow]] = {}
            for job in jobs:
                groups.setdefault(id(job.variant), []).append(job)
            for group in groups.values():
                try:
                    await self._score_shadows(group)
                except Exception:
                    log.exception("shadow scoring failed for endpoint %s", group[0].endpoint.name)

    async def _score_shadows(self, jobs: list[_Shadow]) -> None:
        """Score the mirrored requests of one variant together; one by one when the variant has
        drill faults (each request draws its own) or a request does not fit the batch."""
        variant = jobs[0].variant
        if len(jobs) == 1 or variant.faults is not None:
            for job in jobs:
                await self._score_shadow(job)
            return
        started = time.perf_counter()
        try:
            names = [spec.name for spec in variant.model.inputs]
            merged = {name: [value for job in jobs for value in job.columns[name]] for name in names}
            feeds = variant.model.feeds(merged)
        except Exception:  # a request the model refuses: each one scored (and failed) on its own
            for job in jobs:
                await self._score_shadow(job)
            return
        try:
            scores = await self._score_rows(variant.model, feeds)
        except Exception as exc:
            latency = time.perf_counter() - started
            for job in jobs:
                self._shadow_failed(job, exc, latency)
            return
        latency = time.perf_counter() - started  # each request waited for the whole batch
        start = 0
        for job in jobs:
            n = len(job.live_scores)
            self._shadow_scored(job, scores[start:start + n], latency)
            start += n

    async def _score_rows(self, model: ServedModel, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Scores in the loop for small inputs (a thread switch costs more than the model), else
        on the background threads."""
        if len(next(iter(feeds.values()))) > INLINE_ROWS:
            return await self.in_background(model.score, feeds)
        return model.score(feeds)

    async def _score_shadow(self, job: _Shadow) -> None:
        ep, variant = job.endpoint, job.variant
        labels = (ep.name, variant.name, variant.model.version)
        self.metrics.child(self.metrics.shadow_requests, *labels).inc()
        started = time.perf_counter()
        try:
            feeds = variant.model.feeds(job.columns)
            faults = variant.faults
            if faults is not None and faults.latency_ms:
                await asyncio.sleep(faults.latency_ms / 1000)
            if faults is not None and faults.error_rate and self._rng() < faults.error_rate:
                raise InjectedFault(f"injected failure in shadow variant {variant.name!r}")
            scores = await self._score_rows(variant.model, feeds)
        except Exception as exc:
            self._shadow_failed(job, exc, time.perf_counter() - started, counted=True)
            return
        self._shadow_scored(job, scores, time.perf_counter() - started, counted=True)

    def _shadow_failed(self, job: _Shadow, exc: Exception, latency: float, counted: bool = False) -> None:
        ep, variant = job.endpoint, job.variant
        if not counted:
            self.metrics.child(self.metrics.shadow_requests, ep.name, variant.name, variant.model.version).inc()
        self._failed(ep, variant, exc)
        self.stats.record(StatsKey(ep.name, variant.name, variant.model.version, job.route_version, "shadow"),
                          latency, _NO_SCORES, True)

    def _shadow_scored(self, job: _Shadow, scores: np.ndarray, latency: float, counted: bool = False) -> None:
        ep, variant = job.endpoint, job.variant
        labels = (ep.name, variant.name, variant.model.version)
        if not counted:
            self.metrics.child(self.metrics.shadow_requests, *labels).inc()
        threshold = self.settings.decision_threshold
        disagreements = int(((scores >= threshold) != (job.live_scores >= threshold)).sum())
        if disagreements:
            self.metrics.child(self.metrics.shadow_disagreements, *labels).inc(disagreements)
        self._record(ep, _Answer(variant.name, variant.model.version, scores), job.route_version, latency,
                     job.request_id, job.unit_id, job.digests, "shadow", disagreements=disagreements)

    async def _flush_metrics(self) -> None:
        """Export the histograms counted in process (in the loop, where they are counted)."""
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.metrics.flush()

    async def _publish_stats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.stats_flush_seconds)
            try:
                await self.in_background(self._publish_once)
            except Exception:
                log.exception("publishing running sums failed; will retry")

    def _publish_once(self) -> None:
        # The log's counters first: during a database outage the stats write fails, and that is
        # exactly when the failed and dropped rows must still show.
        self.metrics.predlog_written.set(self.predlog.written)
        self.metrics.predlog_dropped.set(self.predlog.dropped)
        self.metrics.predlog_failed.set(self.predlog.failed)
        if self._routes is not None:  # the heartbeat: this worker is alive and serves this version
            self.workers.announce(self.worker_id, self._routes.version)
        self.stats_store.publish(self.worker_id, self.stats.snapshot())

    def status(self) -> dict:
        """Worker-level counters for the admin status endpoint."""
        return {"worker_id": self.worker_id, "route_version": self.route_version,
                "route_error": self._route_error, "shadow_queued": self._shadow_queue.qsize(),
                "prediction_log": {"written": self.predlog.written, "dropped": self.predlog.dropped,
                                   "failed": self.predlog.failed, "queued": self.predlog.queued},
                "cache": self.cache.backend if self.cache else "off"}


def _take(columns: dict[str, list], rows: list[int]) -> dict[str, list]:
    return {name: [values[i] for i in rows] for name, values in columns.items()}


def _assemble(answers: list[_Answer], n_rows: int) -> np.ndarray:
    if len(answers) == 1 and answers[0].rows is None:
        return answers[0].scores
    scores = np.empty(n_rows, dtype=np.float64)
    for answer in answers:
        scores[answer.rows] = answer.scores
    return scores


_NO_SCORES = np.empty(0)


def _row_labels(answers: list[_Answer], n_rows: int) -> list[str]:
    labels = [""] * n_rows
    for answer in answers:
        for row in answer.rows or []:
            labels[row] = answer.variant
    return labels


def _row_inputs(columns: dict[str, list], keep: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Per input row: its JSON object of the `keep` columns (`keep` is in name order, and so are
    the keys), logged for replay, and that text's hash, the prediction log's input_hash."""
    names = [name for name in keep if name in columns]
    blake2b = hashlib.blake2b
    if len(columns[names[0]] if names else next(iter(columns.values()))) == 1:  # one row: no transposing
        blob = orjson.dumps({name: columns[name][0] for name in names})
        return [blob.decode()], [blake2b(blob, digest_size=16).hexdigest()]
    ordered = [columns[n] for n in names]
    blobs = [orjson.dumps(dict(zip(names, values, strict=True))) for values in zip(*ordered, strict=True)]
    return [blob.decode() for blob in blobs], [blake2b(blob, digest_size=16).hexdigest() for blob in blobs]


class _RequestIds:
    """Request ids: a random 64-bit prefix per process (drawn again in a forked child) and a
    counter, 32 hex digits like a UUID's hex; unique without a system call per request (uuid4
    reads os.urandom each time)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count()

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


_request_ids = _RequestIds()
os.register_at_fork(after_in_child=_request_ids.reset)
_next_request_id = _request_ids.next


def _request_digest(columns: dict[str, list]) -> str:
    """The canonical input of a whole request: same rows and fields in any key order → same digest."""
    return hashlib.blake2b(orjson.dumps(columns, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()


def ensure_route_table(store: RouteStore, settings: Settings) -> StoredRoutes:
    """The stored route table; seeds version 1 from `routes_file` (or the champion default) if none."""
    stored = store.current()
    if stored is not None:
        return stored
    path = settings.routes_file
    table = load_route_file(path) if path else default_route_table()
    try:
        return store.replace(table.model_dump(exclude_none=True), author="flightdeck-serve",
                             expected_version=0, comment=f"seeded from {path or 'the default (champion)'}")
    except VersionConflictError:  # another process seeded it first
        return store.current()
