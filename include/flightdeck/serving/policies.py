"""Routing decisions: which variant answers a request, which one shadows it, and when to fall back.

Pure logic over a validated `EndpointSpec`; no I/O, no models. Sticky assignment hashes
(salt, unit id), so a unit lands on the same variant in every worker and after restarts.
"""

from __future__ import annotations

import bisect
import hashlib
import operator
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from flightdeck.serving.errors import InvalidInputError, OverrideDisabledError, UnknownEndpointError
from flightdeck.serving.routes import EndpointSpec

_OPS: dict[str, Callable] = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
                             "==": operator.eq, "!=": operator.ne, "in": lambda a, b: a in b}


def override_disabled(endpoint: str, what: str, field: str) -> OverrideDisabledError:
    """The refusal of a forced `what` (a variant or model version) on an endpoint with allow_override false."""
    return OverrideDisabledError(
        f"endpoint {endpoint!r} does not allow forcing a variant (its route table sets allow_override: false), "
        f"so {what} was refused rather than routed by the endpoint's policy. Fix: drop the override "
        "(X-Flightdeck-Variant, params.variant / parameters.variant, the gRPC `variant` parameter or a pinned "
        f"/versions/ path) to be routed by the policy, or have an admin set allow_override: true on endpoint "
        f"{endpoint!r} (PUT /admin/routes).", field=field)


def unit_bucket(salt: str, unit_id: str) -> float:
    """A uniform number in [0, 1) fixed by (salt, unit id): the same in every process."""
    digest = hashlib.blake2b(f"{salt}\x1f{unit_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True)
class Choice:
    """The variants that answer a request: one, several (ensemble), or one per row (conditional)."""

    variant: str | None = None
    members: tuple[str, ...] = ()
    rows: dict[str, list[int]] | None = None
    overridden: bool = False


class Router:
    """Applies one endpoint's policy. Build once per route-table version."""

    def __init__(self, endpoint: str, spec: EndpointSpec, rng: Callable[[], float] = random.random) -> None:
        self.endpoint = endpoint
        self.spec = spec
        self._rng = rng
        self._salt = spec.salt if spec.salt is not None else endpoint
        weights = [(n, w) for n, w in (spec.weights or {}).items() if w > 0]
        total = sum(w for _, w in weights)
        self._names = [n for n, _ in weights]
        self._edges: list[float] = []
        running = 0.0
        for _, weight in weights:
            running += weight / total
            self._edges.append(running)
        self._single = spec.live_variants[0] if spec.policy == "single" else None
        if spec.policy == "ensemble":
            self._members = tuple(spec.ensemble.members if spec.ensemble and spec.ensemble.members
                                  else spec.variants)

    def choose(self, columns: dict[str, list], unit_id: str | None = None,
               override: str | None = None, field: str = "X-Flightdeck-Variant") -> Choice:
        """The variant(s) for this request. An `override` on an endpoint that does not allow one
        raises OverrideDisabledError (`field` names where the override came from)."""
        spec = self.spec
        if override is not None and not spec.allow_override:
            raise override_disabled(self.endpoint, f"variant {override!r}", field)
        if override is not None:
            if override not in spec.variants:
                raise UnknownEndpointError(
                    f"endpoint {self.endpoint!r} has no variant {override!r} (variants: {sorted(spec.variants)}). "
                    "Fix: drop the X-Flightdeck-Variant override or name an existing variant.",
                    field="X-Flightdeck-Variant")
            return Choice(variant=override, overridden=True)
        policy = spec.policy
        if policy == "single":
            return Choice(variant=self._single)
        if policy == "blue_green":
            return Choice(variant=spec.active)
        if policy == "canary":
            return Choice(variant=self._pick(self._rng()))
        if policy == "ab":
            if not unit_id:
                raise InvalidInputError(
                    f"endpoint {self.endpoint!r} runs an A/B test and needs a unit id. Fix: send header "
                    "X-Unit-Id (or params.unit_id / parameters.unit_id).", field="unit_id")
            return Choice(variant=self._pick(unit_bucket(self._salt, unit_id)))
        if policy == "ensemble":
            return Choice(members=self._members)
        return Choice(rows=self._split(columns))

    def _pick(self, u: float) -> str:
        return self._names[min(bisect.bisect_right(self._edges, u), len(self._names) - 1)]

    def _split(self, columns: dict[str, list]) -> dict[str, list[int]]:
        rules = self.spec.conditions or []
        for rule in rules:
            if rule.feature not in columns:
                raise InvalidInputError(f"endpoint {self.endpoint!r} routes on feature {rule.feature!r}, "
                                        "which the request lacks. Fix: send it.", field=rule.feature)
        n_rows = len(next(iter(columns.values())))
        groups: dict[str, list[int]] = {}
        for row in range(n_rows):
            target = self.spec.default
            for rule in rules:
                try:
                    matched = _OPS[rule.op](columns[rule.feature][row], rule.value)
                except TypeError:
                    raise InvalidInputError(
                        f"feature {rule.feature!r} of row {row} cannot be compared with {rule.value!r}. "
                        "Fix: send the type the routing rule expects.", field=rule.feature) from None
                if matched:
                    target = rule.variant
                    break
            groups.setdefault(target, []).append(row)  # type: ignore[arg-type]
        return groups

    def shadow(self) -> str | None:
        """The shadow variant if this request is mirrored."""
        shadow = self.spec.shadow
        if shadow is None:
            return None
        return shadow.variant if shadow.percent >= 100 or self._rng() * 100 < shadow.percent else None


class CircuitBreaker:
    """Closed → open after `threshold` consecutive failures → one trial after `reset_seconds`.

    A trial that succeeds closes the breaker; one that fails opens it again. Per worker:
    each process learns about a failing variant from its own traffic.
    """

    def __init__(self, threshold: int, reset_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self._opened_at >= self.reset_seconds else "open"

    def allow(self) -> bool:
        """Whether the primary may take this request."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial:
            self._trial = True
            return True
        return False

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial = False

    def failure(self) -> None:
        self._failures += 1
        if self._trial or self._failures >= self.threshold:
            self._opened_at = self._clock()
        self._trial = False
