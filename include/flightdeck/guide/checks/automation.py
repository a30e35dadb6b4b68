"""Checkers of the comparison and automation exercises: batch against real-time scores, a release
policy written as code, and an experiment whose "ship" starts a promotion the policy accepts."""

from __future__ import annotations

from pathlib import Path

from flightdeck.guide.checks.base import Context, Criterion, answer_file_criterion, needs, number

PARITY_DAY = "2026-01-21"
POLICY_FILE = "release_policy.yaml"
SHIP_DEFINITION = "ship.yaml"


# ---- 18 batch and real-time give one score ----------------------------------------------------------
def check_18(ctx: Context) -> list[Criterion]:
    from datetime import date

    import numpy as np

    from flightdeck.data.partitions import list_partitions, read_partition

    answer, data = answer_file_criterion(ctx, 18, ["customer_ids", "gateway_scores"])
    if data is None:
        return [answer]
    ids = [str(i) for i in data["customer_ids"]] if isinstance(data["customer_ids"], list) else []
    scores = [number(s) for s in data["gateway_scores"]] if isinstance(data["gateway_scores"], list) else []
    shape = Criterion(len(set(ids)) >= 5 and len(scores) == len(ids) and None not in scores,
                      "`customer_ids` lists at least 5 customers and `gateway_scores` one score for each",
                      f"{len(ids)} id(s), {len(scores)} score(s)")
    if not shape.met:
        return [answer, shape]
    if date.fromisoformat(PARITY_DAY) not in list_partitions(ctx.settings.predictions_dir):
        batch = Criterion(False, f"the batch partition predictions/ds={PARITY_DAY} exists (exercise 2)",
                          "not found")
        return [answer, shape, batch, needs(batch, "the gateway's scores equal the batch scores")]
    frame = read_partition(ctx.settings.predictions_dir, PARITY_DAY)
    frame = frame.assign(customer_id=frame["customer_id"].astype(str)).set_index("customer_id")
    unknown = [i for i in ids if i not in frame.index]
    batch = Criterion(not unknown, f"every customer id is in the batch partition predictions/ds={PARITY_DAY}",
                      f"not in it: {unknown}" if unknown else f"all {len(ids)} found")
    if unknown:
        return [answer, shape, batch, needs(batch, "the gateway's scores equal the batch scores")]
    diff = float(np.max(np.abs(frame.loc[ids, "score"].to_numpy(dtype=float) - np.array(scores, dtype=float))))
    equal = Criterion(diff <= 1e-9, "the gateway's scores equal the batch scores (|difference| ≤ 1e-9)",
                      f"largest difference {diff:.3g}")
    version = str(frame["model_version"].iloc[0])
    logged = ctx.predictions_log_all(["score", "model_version", "forced"])
    served = logged[(logged["model_version"].astype(str) == version)]["score"].to_numpy(dtype=float)
    found = [s for s in scores if served.size and np.min(np.abs(served - s)) <= 1e-12]
    real = Criterion(len(found) == len(scores), f"each score is in the gateway's prediction log, served by version "
                     f"{version} (the scores came from the gateway)", f"{len(found)} of {len(scores)} found")
    return [answer, shape, batch, equal, real]


# ---- 19 release policy as code ------------------------------------------------------------------------
def _plan(ctx: Context, **values):
    base = {"strategy": "canary", "model_name": ctx.model, "model_ref": "challenger", "endpoint": "default",
            "drill_faults": {"latency_ms": 20}}
    return {**base, **values}


def check_19(ctx: Context) -> list[Criterion]:
    from flightdeck.delivery.plan import RolloutPlan
    from flightdeck.delivery.policy import PolicyFloorError, load_policy
    from flightdeck.errors import FlightdeckError

    path = ctx.exercises_dir / POLICY_FILE
    text = f"a release policy exercises/{POLICY_FILE} under FLIGHTDECK_HOME loads"
    if not path.exists():
        found = Criterion(False, text, f"no file {path}")
        return [found, needs(found, "it allows fault drills and still requires an approval"),
                needs(found, "its latency margin is at most 10 ms"),
                needs(found, "flightdeck accepts a drill plan under it and refuses the unsafe ones")]
    try:
        policy = load_policy(Path(path))
    except FlightdeckError as exc:
        found = Criterion(False, text, str(exc))
        return [found]
    criteria = [Criterion(True, text, str(path))]
    criteria.append(Criterion(policy.allow_drill_faults and policy.require_approval,
                              "it allows fault drills and still requires a human approval",
                              f"allow_drill_faults {policy.allow_drill_faults}, require_approval "
                              f"{policy.require_approval}"))
    margin = policy.gates.latency_margin_ms
    criteria.append(Criterion(margin is not None and margin <= 10, "its loosest latency margin is at most 10 ms",
                              f"gates.latency_margin_ms {margin}"))
    outcomes = {}
    for name, values in (("drill", _plan(ctx)), ("no approval", _plan(ctx, require_approval=False)),
                         ("loose latency", _plan(ctx, gates={"latency_margin_ms": 25}))):
        try:
            RolloutPlan.parse(values, policy)
            outcomes[name] = "accepted"
        except PolicyFloorError as exc:
            outcomes[name] = f"refused ({exc})"
        except FlightdeckError as exc:
            outcomes[name] = f"invalid ({exc})"
    ok = outcomes["drill"] == "accepted" and all(outcomes[n].startswith("refused") for n in ("no approval",
                                                                                          "loose latency"))
    criteria.append(Criterion(ok, "flightdeck's own plan check accepts a canary with a +20 ms drill under it, and "
                              "refuses one without approval and one with a 25 ms latency margin",
                              "; ".join(f"{k}: {v}" for k, v in outcomes.items())))
    return criteria


# ---- 20 an experiment that ships itself ---------------------------------------------------------------
def check_20(ctx: Context) -> list[Criterion]:
    from flightdeck.delivery.plan import RolloutPlan
    from flightdeck.errors import FlightdeckError
    from flightdeck.experiments.definitions import load_definition
    from flightdeck.experiments.runs import promotion_conf

    path = ctx.exercises_dir / SHIP_DEFINITION
    try:
        definition = load_definition(path)
    except FlightdeckError as exc:
        found = Criterion(False, f"an experiment definition {SHIP_DEFINITION} in exercises/ under FLIGHTDECK_HOME is valid",
                          str(exc))
        return [found, needs(found, "it is a sequential test of the challenger against the champion"),
                needs(found, "its endpoint splits traffic as the definition says"),
                needs(found, "its ship decision starts a promotion the release policy accepts")]
    criteria = [Criterion(True, f"an experiment definition {SHIP_DEFINITION} in exercises/ under FLIGHTDECK_HOME is valid",
                          f"experiment {definition.name!r}")]
    champion, challenger = ctx.alias("champion"), ctx.alias("challenger")
    arms = {n: ctx.resolve_ref({"alias": v.alias, "version": v.version}) for n, v in definition.variants.items()}
    treatment = next((n for n, v in arms.items() if n != definition.control and v == challenger), None)
    criteria.append(Criterion(definition.policy == "sequential" and arms.get(definition.control) == champion
                              and treatment is not None,
                              "it is a sequential test with the champion as control and the challenger as treatment",
                              f"policy {definition.policy}, arms {arms}, control {definition.control!r}"))
    _, spec = ctx.endpoint(definition.endpoint)
    weights = (spec or {}).get("weights") or {}
    total = sum(weights.values()) or 1
    expected = {n: v.weight for n, v in definition.variants.items()}
    route_arms = {n: ctx.resolve_ref(v) for n, v in ((spec or {}).get("variants") or {}).items()}
    split = (spec is not None and spec.get("policy") == "ab" and set(weights) == set(expected)
             and all(abs(weights[n] / total - expected[n]) < 1e-9 for n in expected)
             and all(route_arms.get(n) == arms[n] for n in arms))
    criteria.append(Criterion(split, f"its endpoint `{definition.endpoint}` is a sticky A/B endpoint whose arms and "
                              "weights are the definition's", f"route table: {spec}"))
    if treatment is None:
        return [*criteria, needs(criteria[1], "its ship decision starts a promotion the release policy accepts")]
    conf = promotion_conf(definition, treatment, [str(challenger)])
    try:
        plan = RolloutPlan.parse({"strategy": "canary", "model_name": ctx.model, **conf})
        verdict, accepted = f"steps {plan.step_percents}, approval {plan.require_approval}", True
    except FlightdeckError as exc:
        verdict, accepted = str(exc), False
    criteria.append(Criterion(accepted and bool(definition.promotion.get("steps")),
                              "on ship, the promote_canary run it starts (with your `promotion` steps) passes the "
                              "release policy in force", verdict))
    return criteria
