"""The steps of a promotion, free of Airflow: resolve, gate windows, aliases, audit.

Every function here is safe to call again: it sets the state the plan wants rather than
applying a change, which is what lets a cleared or retried Airflow task re-run it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from flightdeck.config import safe_run_id
from flightdeck.delivery.plan import ResolvedRollout, RolloutPlan, RolloutPlanError
from flightdeck.registry import CHAMPION, PREVIOUS, Registry

log = logging.getLogger(__name__)

AUDIT_TAG = "flightdeck.release"


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


def promote_aliases(rollout: ResolvedRollout, registry: Registry) -> dict[str, str]:
    """`champion` → candidate, `previous` → the baseline. Returns the aliases after."""
    name = rollout.plan.model_name
    registry.client.set_registered_model_alias(name, PREVIOUS, rollout.baseline_version)
    registry.client.set_registered_model_alias(name, CHAMPION, rollout.candidate_version)
    return registry.aliases(name)


def restore_aliases(rollout: ResolvedRollout, registry: Registry) -> dict[str, str]:
    """`champion` and `previous` as they were when the rollout started."""
    name = rollout.plan.model_name
    registry.client.set_registered_model_alias(name, CHAMPION, rollout.baseline_version)
    previous = rollout.aliases_before.get(PREVIOUS)
    if previous is not None:
        registry.client.set_registered_model_alias(name, PREVIOUS, previous)
    elif PREVIOUS in registry.aliases(name):
        registry.client.delete_registered_model_alias(name, PREVIOUS)
    return registry.aliases(name)


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
