"""The steps of a promotion, free of Airflow: resolve, gate windows, aliases, audit.

Every function here is safe to call again: it sets the state the plan wants rather than
applying a change, which is what lets a cleared or retried Airflow task re-run it. Alias moves
are compare-and-set: they act only while `champion` is what this rollout saw or set, so
re-running an old run's task never moves production back. One rollout per model at a time:
a compare-and-set lock row names the run that holds the model (`flightdeck.delivery.lock`), and
an operator can freeze a model with a hand-set registered-model tag.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from dataclasses import dataclass

from flightdeck.config import safe_run_id
from flightdeck.delivery.lock import ReleaseLocks
from flightdeck.delivery.plan import ResolvedRollout, RolloutPlan, RolloutPlanError
from flightdeck.errors import FlightdeckError
from flightdeck.registry import CHAMPION, PREVIOUS, Registry

log = logging.getLogger(__name__)

AUDIT_TAG = "flightdeck.release"
RELEASE_LOCK_TAG = "flightdeck.release_lock"


def resolve(plan: RolloutPlan, registry: Registry) -> ResolvedRollout:
    """Pin the baseline (today's champion) and the candidate to version numbers."""
    champion = registry.alias_version(plan.model_name, CHAMPION)
    if champion is None:
        raise RolloutPlanError(f"model {plan.model_name!r} has no {CHAMPION!r} to compare against. Fix: run "
                               "train_register first (the first version becomes champion).")
    candidate = registry.resolve(plan.model_name, plan.model_ref)
    if candidate.version == str(champion.version):
        raise RolloutPlanError(f"{plan.model_ref!r} is version {candidate.version}, which is already the "
                               f"{CHAMPION}. Fix: name another version (e.g. the alias 'challenger').")
    return ResolvedRollout(plan=plan, baseline_version=str(champion.version),
                           candidate_version=str(candidate.version),
                           aliases_before=registry.aliases(plan.model_name))


@dataclass(frozen=True)
class AliasMove:
    """The aliases after a move, whether this call moved them, and why not if it did not."""

    aliases: dict[str, str]
    moved: bool
    left_alone: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _champion(registry: Registry, name: str) -> str | None:
    return registry.aliases(name).get(CHAMPION)


def _left_alone(name: str, champion: str | None, expected: str, action: str, registry: Registry) -> AliasMove:
    note = (f"{CHAMPION!r} of {name!r} is v{champion}, not v{expected} as this rollout left it: a later "
            f"release owns it, so {action} changes nothing")
    log.warning("%s", note)
    return AliasMove(registry.aliases(name), moved=False, left_alone=note)


def promote_aliases(rollout: ResolvedRollout, registry: Registry) -> AliasMove:
    """`champion` → candidate, `previous` → the baseline, only while `champion` is still the
    baseline this rollout saw (or already the candidate: a re-run)."""
    name = rollout.plan.model_name
    champion = _champion(registry, name)
    if champion == rollout.candidate_version:
        return AliasMove(registry.aliases(name), moved=False)
    if champion != rollout.baseline_version:
        return _left_alone(name, champion, rollout.baseline_version, "the promotion", registry)
    registry.client.set_registered_model_alias(name, PREVIOUS, rollout.baseline_version)
    registry.client.set_registered_model_alias(name, CHAMPION, rollout.candidate_version)
    return AliasMove(registry.aliases(name), moved=True)


def restore_aliases(rollout: ResolvedRollout, registry: Registry) -> AliasMove:
    """`champion` and `previous` as they were when the rollout started, only while `champion` is
    still what this rollout set (the candidate) or saw (the baseline)."""
    name = rollout.plan.model_name
    champion = _champion(registry, name)
    if champion not in (rollout.candidate_version, rollout.baseline_version):
        return _left_alone(name, champion, rollout.candidate_version, "the rollback", registry)
    registry.client.set_registered_model_alias(name, CHAMPION, rollout.baseline_version)
    previous = rollout.aliases_before.get(PREVIOUS)
    if previous is not None:
        registry.client.set_registered_model_alias(name, PREVIOUS, previous)
    elif PREVIOUS in registry.aliases(name):
        registry.client.delete_registered_model_alias(name, PREVIOUS)
    return AliasMove(registry.aliases(name), moved=champion == rollout.candidate_version)


class ReleaseLockedError(FlightdeckError):
    """Another rollout of the same model is under way, or an operator froze the model."""


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def acquire_release_lock(rollout: ResolvedRollout, registry: Registry, run_id: str,
                         locks: ReleaseLocks | None = None) -> None:
    """Take the model's release lock for `run_id`, so a second rollout of the same model, from
    either promotion DAG, fails fast instead of racing this one.

    The lock is a row taken by compare-and-set (`flightdeck.delivery.lock`): of several runs
    resolving at once, exactly one gets it. It lapses at the end of the rollout's
    `max_duration_seconds`, so a run that died holding it does not block the model for ever, and
    taking over a lapsed lock is compare-and-set too. Taking it again from the same run (a retried
    task) is let through. A hand-set registered-model tag `flightdeck.release_lock` freezes the
    model until it is removed."""
    name = rollout.plan.model_name
    _refuse_if_frozen(registry, name, run_id)
    locks = locks or ReleaseLocks.from_settings()
    held = locks.acquire(name, run_id, rollout.started_at + rollout.plan.max_duration_seconds)
    if held is not None:
        raise ReleaseLockedError(
            f"model {name!r} is being released by run {held.run_id!r} (its lock lapses at "
            f"{_iso(held.expires_at)}). Fix: wait for that run to finish or roll back; if it is gone, free "
            f"the lock: {shlex.join(['flightdeck', 'release-lock', 'free', name, held.run_id])}")


def release_release_lock(rollout: ResolvedRollout, registry: Registry, run_id: str,
                         locks: ReleaseLocks | None = None) -> bool:
    """Drop the lock if `run_id` holds it; True if it did. Another run's lock is left alone."""
    name = rollout.plan.model_name
    released = (locks or ReleaseLocks.from_settings()).release(name, run_id)
    tagged = _tag_hold(registry, name)
    if tagged is not None and tagged["run_id"] == run_id:  # a lock an earlier flightdeck wrote as a tag
        registry.client.delete_registered_model_tag(name, RELEASE_LOCK_TAG)
        released = True
    return released


def _refuse_if_frozen(registry: Registry, name: str, run_id: str) -> None:
    held = _tag_hold(registry, name)
    if held is None or held["run_id"] == run_id or held["expires_at"] <= time.time():
        return
    unfreeze = (f"delete the tag (in the MLflow UI, or MlflowClient().delete_registered_model_tag({name!r}, "
                f"{RELEASE_LOCK_TAG!r}))")
    if held["expires_at"] == float("inf"):
        raise ReleaseLockedError(f"model {name!r} is frozen by hand: registered-model tag {RELEASE_LOCK_TAG!r} "
                                 f"is {held['run_id']!r}. Fix: when the freeze is over, {unfreeze}.")
    raise ReleaseLockedError(
        f"model {name!r} is being released by run {held['run_id']!r} (registered-model tag "
        f"{RELEASE_LOCK_TAG!r}, written by an earlier flightdeck; it lapses at {_iso(held['expires_at'])}). "
        f"Fix: wait for that run to finish or roll back; if it is gone, {unfreeze}.")


def _tag_hold(registry: Registry, name: str) -> dict | None:
    """The registered-model tag: an operator's freeze (any text, holds until removed) or a lock
    that an earlier flightdeck wrote as JSON (run id and expiry)."""
    value = registry.client.get_registered_model(name).tags.get(RELEASE_LOCK_TAG)
    if not value:
        return None
    try:
        held = json.loads(value)
        return {"run_id": str(held["run_id"]), "expires_at": float(held["expires_at"])}
    except (ValueError, KeyError, TypeError):
        return {"run_id": value, "expires_at": float("inf")}  # a hand-set tag holds until removed


def audit(rollout: ResolvedRollout, registry: Registry, run_id: str, outcome: str, detail: str) -> dict:
    """Record the rollout's outcome on the candidate's model version (a tag per run), and log it."""
    record = {"run_id": run_id, "strategy": rollout.plan.strategy, "target": rollout.plan.target,
              "outcome": outcome, "baseline": rollout.baseline_version, "candidate": rollout.candidate_version,
              "detail": detail[:4000], "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    key = f"{AUDIT_TAG}.{safe_run_id(run_id)}"
    registry.client.set_model_version_tag(rollout.plan.model_name, rollout.candidate_version, key,
                                          json.dumps(record))
    log.info("release audit: %s", record)
    return record


@dataclass(frozen=True)
class WindowSelector:
    """Which entries of a metric source are the baseline and which the candidate.

    A variant is picked by name and model version; `candidate_role` is "shadow" when the
    candidate only sees mirrored traffic (blue-green before the switch).
    """

    baseline_variant: str
    baseline_version: str
    candidate_variant: str
    candidate_version: str
    candidate_role: str = "live"

    def to_dict(self) -> dict:
        return dict(self.__dict__)
