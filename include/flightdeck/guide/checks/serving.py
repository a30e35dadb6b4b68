"""Checkers of the real-time, blue-green, canary and multi-model exercises: the gateway's route
table and its history, its running sums and prediction log, and the release audit in MLflow."""

from __future__ import annotations

import json
import math

from flightdeck.guide.checks.base import Context, Criterion, answer_file_criterion, close, needs


def _endpoint_criterion(ctx: Context, name: str, policy: str) -> tuple[Criterion, dict | None, int]:
    version, spec = ctx.endpoint(name)
    text = f"the route table in force has an endpoint `{name}` with policy `{policy}`"
    if spec is None:
        found = (f"route table version {version} has endpoints {sorted(ctx.current_routes()[1].get('endpoints', {}))}"
                 if version else "no route table is stored yet: start the gateway once (`flightdeck serve`)")
        return Criterion(False, text, found), None, version
    return Criterion(spec.get("policy") == policy, text, f"policy {spec.get('policy')!r} in route version {version}"), \
        (spec if spec.get("policy") == policy else None), version


def _variants_serving(ctx: Context, spec: dict) -> dict[str, str | None]:
    return {name: ctx.resolve_ref(v) for name, v in (spec.get("variants") or {}).items()}


# ---- 04 real-time -----------------------------------------------------------------------------
def check_04(ctx: Context) -> list[Criterion]:
    challenger = ctx.alias("challenger")
    exists, spec, _ = _endpoint_criterion(ctx, "credit-v2", "single")
    if spec is None:
        return [exists, needs(exists, "its variant pins the challenger's version by number"),
                needs(exists, "at least 20 rows were scored on it by that version")]
    variants = spec.get("variants") or {}
    pinned = [n for n, v in variants.items() if str(v.get("version")) == str(challenger) and v.get("alias") is None]
    pin = Criterion(bool(pinned) and len(variants) == 1,
                    f"its variant pins the challenger's version ({challenger}) by number, not by alias",
                    f"variants {json.dumps(variants)}")
    log = ctx.predictions_log("credit-v2", ["model_version", "forced"])
    rows = int(((log["model_version"].astype(str) == str(challenger)) & ~log["forced"].astype(bool)).sum()) \
        if len(log) else 0
    traffic = Criterion(rows >= 20, "at least 20 rows were scored on it by that version (the prediction log)",
                        f"{rows} logged live row(s) of version {challenger}")
    return [exists, pin, traffic]


# ---- 09, 10 blue-green --------------------------------------------------------------------------
def _blue_green_history(ctx: Context, endpoint: str) -> list[tuple[int, dict, dict | None, str | None]]:
    """(version, spec, previous spec, comment) for each stored version that changed `endpoint`."""
    out = []
    for record in ctx.route_history():
        new = (record.new_document.get("endpoints") or {}).get(endpoint)
        old = ((record.old_document or {}).get("endpoints") or {}).get(endpoint)
        if new is not None and new != old:
            out.append((record.version, new, old, record.comment))
    return out


def _only_active_changed(old: dict | None, new: dict) -> bool:
    if old is None:
        return False
    strip = lambda spec: {k: v for k, v in spec.items() if k != "active"}  # noqa: E731
    return strip(old) == strip(new) and old.get("active") != new.get("active")


def _blue_green_setup(ctx: Context, endpoint: str) -> tuple[list[Criterion], dict | None, dict[str, str | None]]:
    champion, challenger = ctx.alias("champion"), ctx.alias("challenger")
    exists, spec, _ = _endpoint_criterion(ctx, endpoint, "blue_green")
    if spec is None:
        return [exists], None, {}
    serving = _variants_serving(ctx, spec)
    colours = Criterion(sorted(serving.values(), key=str) == sorted([champion, challenger], key=str),
                        f"its two colours serve the champion ({champion}) and the challenger ({challenger})",
                        f"variants serve {serving}")
    return [exists, colours], spec, serving


def check_09(ctx: Context) -> list[Criterion]:
    champion, challenger = ctx.alias("champion"), ctx.alias("challenger")
    criteria, spec, serving = _blue_green_setup(ctx, "bg")
    if spec is None or not criteria[-1].met:
        return [*criteria, needs(criteria[-1], "the challenger's colour is active now")]
    live = serving.get(spec.get("active"))
    criteria.append(Criterion(live == challenger, "the challenger's colour is active now",
                              f"active {spec.get('active')!r} serves version {live}"))
    history = _blue_green_history(ctx, "bg")
    served_champion_first = any(serving.get(s.get("active")) == champion for _, s, _, _ in history)
    criteria.append(Criterion(served_champion_first,
                              "before that, the champion's colour was active on `bg` (a stored route version)",
                              f"{len(history)} stored change(s) of `bg`"))
    switch = next((v for v, s, old, _ in reversed(history) if serving.get(s.get("active")) == challenger
                   and old is not None and serving.get(old.get("active")) == champion), None)
    one_field = switch is not None and any(v == switch and _only_active_changed(old, s) for v, s, old, _ in history)
    criteria.append(Criterion(one_field, "the switch to the challenger changed only `active` (one instant cut-over)",
                              f"switch in route version {switch}" if switch else "no change from champion to "
                              "challenger colour found in the history"))
    return criteria


def check_10(ctx: Context) -> list[Criterion]:
    champion, challenger = ctx.alias("champion"), ctx.alias("challenger")
    criteria, spec, serving = _blue_green_setup(ctx, "bg-drill")
    if spec is None or not criteria[-1].met:
        return [*criteria, needs(criteria[-1], "the history shows champion → challenger → champion")]
    history = _blue_green_history(ctx, "bg-drill")
    live = [serving.get(s.get("active")) for _, s, _, _ in history]
    collapsed = [v for i, v in enumerate(live) if i == 0 or v != live[i - 1]]
    round_trip = any(collapsed[i:i + 3] == [champion, challenger, champion] for i in range(len(collapsed)))
    criteria.append(Criterion(round_trip, "the route history shows the champion live, then the challenger, "
                              "then the champion again (the rollback)", f"live versions over time: {collapsed}"))
    now = serving.get(spec.get("active"))
    criteria.append(Criterion(now == champion, "the champion's colour is active now",
                              f"active {spec.get('active')!r} serves version {now}"))
    last = history[-1] if history else None
    rolled = last is not None and _only_active_changed(last[2], last[1]) and serving.get(last[1].get("active")) == champion
    criteria.append(Criterion(rolled, "the rollback was one change of `active` and nothing else",
                              f"last change: route version {last[0]}" if last else "no change stored"))
    comment = last[3] if last else None
    criteria.append(Criterion(bool(comment and comment.strip()), "the rollback's route change carries a comment "
                              "saying why (the audit trail)", f"comment {comment!r}"))
    return criteria


# ---- 11, 12 canary ------------------------------------------------------------------------------
def _windows(ctx: Context, endpoint: str, since: int, role: str = "live") -> dict[str, tuple[str, object]]:
    """variant -> (model_version, VariantWindow) from the gateway's running sums since a route version."""
    from flightdeck.delivery.sources.gateway import window_from_stats
    from flightdeck.serving.stats import StatsStore

    out: dict[str, tuple[str, object]] = {}
    if not ctx.gateway_db_exists():
        return out
    try:
        summaries = StatsStore(ctx.engine).summary_as_dict(endpoint, since, role)
    except Exception:  # noqa: BLE001 - no schema yet
        return out
    for item in summaries:
        if int(item["requests"]) > 0:
            out[str(item["variant"])] = (str(item["model_version"]), window_from_stats(item))
    return out


def _release_audits(ctx: Context, version: str | None) -> list[dict]:
    from flightdeck.delivery.release import AUDIT_TAG

    if version is None:
        return []
    tags = ctx.registry.get_version(ctx.model, version).tags
    out = []
    for key, value in tags.items():
        if key.startswith(AUDIT_TAG + "."):
            try:
                out.append(json.loads(value))
            except ValueError:
                continue
    return out


def check_11(ctx: Context) -> list[Criterion]:
    from flightdeck.delivery.gates import evaluate
    from flightdeck.delivery.plan import GateSettings

    champion, challenger = ctx.alias("champion"), ctx.alias("challenger")

    def drilled(spec: dict) -> bool:
        weights = spec.get("weights") or {}
        return spec.get("policy") == "canary" and any(
            ((v.get("faults") or {}).get("latency_ms") or 0) >= 20 and weights.get(n, 0) > 0
            and ctx.resolve_ref(v) == challenger for n, v in (spec.get("variants") or {}).items())

    drill_version = ctx.first_route_version_with("canary-drill", drilled)
    drill = Criterion(drill_version is not None, "the endpoint `canary-drill` once sent canary traffic to the "
                      "challenger with a drill fault of at least +20 ms latency",
                      f"route version {drill_version}" if drill_version else "no such route version is stored")
    if drill_version is None:
        return [drill, needs(drill, "the latency gate fails on the gateway's running sums"),
                needs(drill, "traffic is back on the champion only"),
                needs(drill, "the challenger carries a release audit with outcome rolled_back")]
    spec_then = next(r.new_document["endpoints"]["canary-drill"] for r in ctx.route_history()
                     if r.version == drill_version)
    faulted = next(n for n, v in spec_then["variants"].items() if (v.get("faults") or {}).get("latency_ms"))
    baseline = next((n for n, v in spec_then["variants"].items() if n != faulted and ctx.resolve_ref(v) == champion),
                    None)
    windows = _windows(ctx, "canary-drill", drill_version)
    if baseline in windows and faulted in windows:
        report = evaluate(windows[baseline][1], windows[faulted][1], GateSettings(), GateSettings().alpha)
        latency = report.check("latency")
        gate = Criterion(latency is not None and latency.status == "fail",
                         "the latency gate, evaluated on the gateway's running sums since the drill, fails",
                         latency.message if latency is not None else "no latency check")
    else:
        gate = Criterion(False, "the latency gate, evaluated on the gateway's running sums since the drill, fails",
                         f"no traffic recorded for both `{baseline}` and `{faulted}` since route version "
                         f"{drill_version}: send requests while the canary runs")
    _, now = ctx.endpoint("canary-drill")
    live_now = set()
    if now is not None:
        weights = now.get("weights") or {}
        for name in (now.get("variants") or {}):
            carries = (now.get("policy") != "canary" and name in _live(now)) or weights.get(name, 0) > 0
            if carries:
                live_now.add(ctx.resolve_ref(now["variants"][name]))
    back = Criterion(live_now == {champion}, "traffic is back on the champion only (the rollback)",
                     f"versions taking traffic now: {sorted(map(str, live_now))}")
    audits = [a for a in _release_audits(ctx, challenger) if a.get("outcome") == "rolled_back"
              and a.get("strategy") == "canary"]
    audit = Criterion(bool(audits) and all(str(a.get("baseline")) == str(champion) for a in audits),
                      f"the challenger (version {challenger}) carries a canary release audit with outcome "
                      "rolled_back, and the champion alias stayed on its baseline",
                      f"{len(audits)} rolled-back canary audit(s)" if audits else "no rolled-back canary audit tag")
    criteria = [drill, gate, back, audit]
    if ctx.airflow_url:
        runs, found = ctx.airflow_runs("promote_canary")
        failed = [r for r in runs or [] if drill_run(r, "canary-drill")]
        criteria.append(Criterion(bool(failed), "Airflow's REST API lists a failed promote_canary run on "
                                  "`canary-drill` with a latency drill of at least 20 ms (a rollback fails the run)",
                                  f"{found}; matching: {[r.get('dag_run_id') for r in failed] or 'none'}"))
    return criteria


def drill_run(run: dict, endpoint: str) -> bool:
    """A REST `dag_runs` entry of a failed promote_canary run on `endpoint` with a +20 ms drill."""
    conf = run.get("conf") or {}
    latency = ((conf.get("drill_faults") or {}).get("latency_ms")) or 0
    return run.get("state") == "failed" and conf.get("endpoint") == endpoint and float(latency) >= 20


def _live(spec: dict) -> set[str]:
    helpers = {(spec.get(k) or {}).get("variant") for k in ("shadow", "fallback")}
    if spec.get("policy") == "blue_green":
        return {spec.get("active")}
    return {n for n in (spec.get("variants") or {}) if n not in helpers}


def check_12(ctx: Context) -> list[Criterion]:
    champion, challenger = ctx.alias("champion"), ctx.alias("challenger")

    def ten_percent(spec: dict) -> bool:
        if spec.get("policy") != "canary":
            return False
        weights, total = spec.get("weights") or {}, sum((spec.get("weights") or {}).values())
        serving = {n: ctx.resolve_ref(v) for n, v in (spec.get("variants") or {}).items()}
        share = sum(w for n, w in weights.items() if serving.get(n) == challenger) / total if total else 0
        return math.isclose(share, 0.1, abs_tol=1e-9) and set(serving.values()) == {champion, challenger}

    exists, spec, version = _endpoint_criterion(ctx, "canary-lab", "canary")
    split = Criterion(spec is not None and ten_percent(spec), "its weights send 10 % to the challenger and 90 % to "
                      "the champion",
                      f"weights {spec.get('weights') if spec else None}")
    if not split.met:
        return [exists, split, needs(split, "at least 300 requests reached it since"),
                needs(split, "the observed share is what 10 % predicts")]
    since = ctx.first_route_version_with("canary-lab", lambda s: s == spec) or version
    windows = _windows(ctx, "canary-lab", since)
    total = sum(w.requests for _, w in windows.values())
    to_challenger = sum(w.requests for v, w in windows.values() if v == challenger)
    enough = Criterion(total >= 300, "at least 300 requests reached it since that split (the gateway's running sums)",
                       f"{total} request(s) since route version {since}")
    share = to_challenger / total if total else float("nan")
    sigma = math.sqrt(0.1 * 0.9 / total) if total else float("inf")
    plausible = Criterion(total >= 300 and abs(share - 0.1) <= 4 * sigma,
                          "the challenger's observed share is within four standard errors of 10 %",
                          f"{to_challenger} of {total} = {share:.4f}")
    answer, data = answer_file_criterion(ctx, 12, ["canary_share"])
    criteria = [exists, split, enough, plausible, answer]
    if data is not None:
        criteria.append(Criterion(total > 0 and close(data["canary_share"], share, rel=0, abs_tol=0.005),
                                  "`canary_share` is the challenger's observed share from /stats (±0.005)",
                                  f"you wrote {data['canary_share']!r}; the running sums give {share:.4f}"))
    return criteria


# ---- 16, 17 multi-model -------------------------------------------------------------------------
def check_16(ctx: Context) -> list[Criterion]:
    from flightdeck.serving.policies import Router
    from flightdeck.serving.routes import parse_route_table

    champion, challenger = ctx.alias("champion"), ctx.alias("challenger")
    exists, spec, _ = _endpoint_criterion(ctx, "by-age", "conditional")
    if spec is None:
        return [exists, needs(exists, "customers under 30 are scored by the challenger"),
                needs(exists, "everyone else by the champion")]
    router = Router("by-age", parse_route_table({"endpoints": {"by-age": spec}}).endpoints["by-age"])
    picks = {}
    for age in (18, 29, 30, 45, 70):
        rows = router.choose({"age": [age]}).rows or {}
        variant = next(iter(rows), None)
        picks[age] = ctx.resolve_ref(spec["variants"][variant]) if variant else None
    young = Criterion(picks[18] == challenger and picks[29] == challenger,
                      f"customers under 30 are scored by the challenger (version {challenger})",
                      f"age 18 → version {picks[18]}, age 29 → version {picks[29]}")
    rest = Criterion(all(picks[a] == champion for a in (30, 45, 70)),
                     f"everyone 30 or older is scored by the champion (version {champion})",
                     f"ages 30, 45, 70 → versions {picks[30]}, {picks[45]}, {picks[70]}")
    return [exists, young, rest]


def check_17(ctx: Context) -> list[Criterion]:
    champion, challenger = ctx.alias("champion"), ctx.alias("challenger")
    exists, spec, _ = _endpoint_criterion(ctx, "ensemble-safe", "ensemble")
    if spec is None:
        return [exists, needs(exists, "the ensemble averages the champion and the challenger"),
                needs(exists, "a fallback answers within a latency budget"),
                needs(exists, "at least 10 rows were scored on it")]
    serving = _variants_serving(ctx, spec)
    ensemble = spec.get("ensemble") or {}
    fallback = spec.get("fallback") or {}
    members = ensemble.get("members") or [n for n in serving if n != fallback.get("variant")]
    member_versions = sorted({serving.get(m) for m in members}, key=str)
    mean = Criterion(ensemble.get("method", "mean") == "mean" and member_versions == sorted([champion, challenger], key=str),
                     "the ensemble averages (method mean) the champion and the challenger",
                     f"method {ensemble.get('method', 'mean')!r}, members {members} serving {member_versions}")
    budget = fallback.get("latency_budget_ms")
    safe = Criterion(bool(fallback) and serving.get(fallback.get("variant")) == champion and budget is not None
                     and budget <= 100 and fallback.get("variant") not in members,
                     "a fallback variant outside the ensemble serves the champion with a latency budget of at "
                     "most 100 ms", f"fallback {fallback or None}")
    log = ctx.predictions_log("ensemble-safe", ["request_id", "forced"])
    rows = int((~log["forced"].astype(bool)).sum()) if len(log) else 0
    traffic = Criterion(rows >= 10, "at least 10 rows were scored on it (the prediction log)",
                        f"{rows} logged live row(s)")
    return [exists, mean, safe, traffic]
