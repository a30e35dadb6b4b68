"""The local gateway as a rollout target: traffic moves by replacing one endpoint's routes.

During a rollout the promotion owns its endpoint: it writes the endpoint's whole spec (other
endpoints of the table are left as they are). Variants pin model *versions*, not aliases,
so moving an alias never moves traffic behind the rollout's back.

- canary: policy `canary`, variants `stable` (baseline) and `canary` (candidate), weights
  (100 − p, p); promoted: policy `single` on the candidate; rolled back: `single` on the baseline.
- blue-green: policy `blue_green` with two colours; the candidate is the idle colour,
  mirrored as a shadow while it is idle (the evidence for the switch); cut-over and rollback
  are one change of `active`, and both colours stay loaded so either is instant.

Each method computes the endpoint spec the plan wants and stores it only when it differs
from the one in force, through `GatewayClient.update_endpoint` (with the version it read, so a
concurrent edit is a 409, retried on the new table): re-running a method never creates a new
route version. Each change waits until every worker of the gateway serves it (a 504 after the
client's wait is a transient failure: the re-run finds the spec in force and waits again). The endpoint must already be in the route table: a rollout on a name the
gateway does not serve fails at deploy with `EndpointNotFoundError` naming it, instead of
creating an empty endpoint whose gates would wait for traffic that never comes.
"""

from __future__ import annotations

import logging

from flightdeck.delivery.targets.base import TrafficState
from flightdeck.errors import FlightdeckError
from flightdeck.serving.client import EndpointNotFoundError, GatewayClient

log = logging.getLogger(__name__)

COLOURS = ("blue", "green")


class TargetStateError(FlightdeckError):
    """The target is in a state the rollout did not put it in (someone else changed it)."""


class GatewayTarget:
    """Moves one endpoint of a running gateway between a baseline and a candidate version."""

    name = "gateway"

    def __init__(self, client: GatewayClient, endpoint: str, model_name: str, baseline: str, candidate: str,
                 strategy: str, shadow_percent: float = 100.0, author_comment: str = "",
                 candidate_faults: dict | None = None) -> None:
        if baseline == candidate:
            raise TargetStateError(f"candidate version {candidate} is already the baseline of endpoint "
                                   f"{endpoint!r}. Fix: promote a different version.")
        self.client = client
        self.endpoint = endpoint
        self.model_name = model_name
        self.baseline = baseline
        self.candidate = candidate
        self.strategy = strategy
        self.shadow_percent = shadow_percent
        self.comment = author_comment
        self.candidate_faults = candidate_faults  # drills: injected latency / errors on the candidate
        self.left_alone: str | None = None  # why the last rollback changed nothing, if it chose not to

    # ---- the protocol -----------------------------------------------------------------------
    def state(self) -> TrafficState:
        stored = self.client.routes()
        spec = stored["document"]["endpoints"].get(self.endpoint)
        return self._traffic(spec, stored)

    def deploy(self) -> TrafficState:
        return self._apply(lambda current: self._spec(0.0, current), "deploy candidate with no live traffic")

    def set_weight(self, percent: float) -> TrafficState:
        if not 0 <= percent <= 100:
            raise ValueError(f"percent must be within 0..100, got {percent}")
        if self.strategy == "blue_green" and percent not in (0, 100):
            raise ValueError("blue-green moves all traffic or none: percent must be 0 or 100")
        return self._apply(lambda current: self._spec(percent, current), f"candidate at {percent:g} %")

    def promote(self) -> TrafficState:
        return self._apply(lambda current: self._spec(100.0, current, final=True), "promote candidate")

    def rollback(self) -> TrafficState:
        """All traffic to the baseline, but only while the endpoint still serves what this rollout
        set (its baseline and candidate, nothing else): a rollback cleared and re-run after a later
        rollout changed the endpoint leaves it alone and says why in `left_alone`."""
        self.left_alone = None

        def rolled_back(current: dict) -> dict | None:
            versions = _versions(current)
            if self.candidate not in versions:
                return None  # the candidate never got here (or no longer is): nothing to undo
            if not versions <= {self.baseline, self.candidate}:
                self.left_alone = (f"endpoint {self.endpoint!r} now serves versions {sorted(versions)}, not only "
                                   f"this rollout's v{self.baseline} and v{self.candidate}: a later change "
                                   "owns it, so the rollback leaves it as it is")
                log.warning("gateway endpoint %s: %s", self.endpoint, self.left_alone)
                return None
            self.left_alone = None
            return self._spec(0.0, current, rollback=True)
        try:
            return self._apply(rolled_back, "roll back to baseline")
        except EndpointNotFoundError:
            return self.state()  # no endpoint, so no candidate traffic to take back

    # ---- specs ------------------------------------------------------------------------------
    def _pin(self, version: str) -> dict:
        spec = {"model": self.model_name, "version": version}
        if version == self.candidate and self.candidate_faults:
            spec["faults"] = dict(self.candidate_faults)
        return spec

    def _spec(self, percent: float, current: dict | None, final: bool = False, rollback: bool = False) -> dict:
        if self.strategy == "canary":
            if final:
                return {"policy": "single", "variants": {"stable": self._pin(self.candidate)}}
            if rollback:
                return {"policy": "single", "variants": {"stable": self._pin(self.baseline)}}
            return {"policy": "canary",
                    "variants": {"stable": self._pin(self.baseline), "canary": self._pin(self.candidate)},
                    "weights": {"stable": 100.0 - percent, "canary": float(percent)}}
        live, idle = self._colours(current)
        spec = {"policy": "blue_green", "variants": {live: self._pin(self.baseline), idle: self._pin(self.candidate)}}
        if rollback or percent == 0:
            spec["active"] = live
            if self.shadow_percent > 0 and not rollback:
                spec["shadow"] = {"variant": idle, "percent": self.shadow_percent}
        else:  # cut-over; the baseline stays loaded so a rollback is one switch back
            spec["active"] = idle
        return spec

    def _colours(self, current: dict | None) -> tuple[str, str]:
        """(colour of the baseline, colour of the candidate), kept stable across calls."""
        if current and current.get("policy") == "blue_green":
            for colour, variant in current["variants"].items():
                if variant.get("version") == self.baseline and colour in COLOURS:
                    return colour, _other(colour)
            active = current.get("active")
            if active in COLOURS and current["variants"][active].get("version") != self.candidate:
                return active, _other(active)
        return COLOURS

    # ---- applying ---------------------------------------------------------------------------
    def _apply(self, desired_for, action: str) -> TrafficState:
        comment = f"{action} (model {self.model_name} v{self.candidate} over v{self.baseline}) {self.comment}"
        # `wait`: the step is over only once every gateway worker serves it, so a gate window that
        # opens after it never counts a request answered by the previous table.
        update = self.client.update_endpoint(self.endpoint, desired_for, comment=comment.strip(), wait=True)
        if update.written:
            log.info("gateway endpoint %s: %s", self.endpoint, action)
        return self.state()

    def _traffic(self, spec: dict | None, stored: dict) -> TrafficState:
        percent = _candidate_percent(spec, self.candidate)
        deployed = spec is not None and self.candidate in _versions(spec)
        return TrafficState(target=f"gateway:{self.endpoint}", baseline=self.baseline,
                            candidate=self.candidate if deployed else None, candidate_percent=percent,
                            revision=int(stored["version"]), changed_at=_epoch(stored["created_at"]))

    def variant_names(self) -> tuple[str, str]:
        """(baseline variant, candidate variant): the names under which the current table serves
        each version ("" when it does not serve it), as the metric sources label them."""
        stored = self.client.routes()
        spec = stored["document"]["endpoints"].get(self.endpoint) or {"variants": {}}
        names = {v.get("version"): name for name, v in spec["variants"].items()}
        return names.get(self.baseline, ""), names.get(self.candidate, "")


def _other(colour: str) -> str:
    return COLOURS[1] if colour == COLOURS[0] else COLOURS[0]


def _versions(spec: dict) -> set[str]:
    return {v.get("version") for v in spec.get("variants", {}).values()}


def _candidate_percent(spec: dict | None, candidate: str) -> float:
    if spec is None:
        return 0.0
    variants = spec["variants"]
    names = {name for name, v in variants.items() if v.get("version") == candidate}
    if not names:
        return 0.0
    policy = spec["policy"]
    if policy in ("canary", "ab"):
        weights = spec["weights"]
        total = sum(weights.values())
        return 100.0 * sum(weights.get(n, 0.0) for n in names) / total
    if policy == "blue_green":
        return 100.0 if spec["active"] in names else 0.0
    if policy == "single":
        shadow = (spec.get("shadow") or {}).get("variant")
        live = [n for n in variants if n != shadow and n != (spec.get("fallback") or {}).get("variant")]
        return 100.0 if live and live[0] in names else 0.0
    raise TargetStateError(f"endpoint uses policy {policy!r}, which a rollout does not manage. Fix: set the "
                           "endpoint to policy single on the champion before promoting.")


def _epoch(created_at: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(created_at).timestamp()
