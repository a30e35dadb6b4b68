"""Checkers of the A/B and shadow exercises: experiment definitions, the route table, the reports
that experiment and shadow analysis wrote, and the system's own design formulas."""

from __future__ import annotations

import json
from pathlib import Path

from flightdeck.guide.checks.base import Context, Criterion, answer_file_criterion, close, needs

AA_DEFINITION = "aa.yaml"
SAMPLE_SIZE_MDE = 0.02


def _latest_report(folder: Path) -> tuple[Path | None, dict | None]:
    reports = sorted(folder.glob("ds=*/report.json"))
    if not reports:
        return None, None
    try:
        return reports[-1], json.loads(reports[-1].read_text())
    except (OSError, ValueError):
        return reports[-1], None


def _shares(weights: dict) -> dict[str, float]:
    total = sum(float(w) for w in weights.values())
    return {str(k): float(w) / total for k, w in weights.items()} if total > 0 else {}


# ---- 13 A/A test tripping the SRM check -----------------------------------------------------------
def check_13(ctx: Context) -> list[Criterion]:
    from flightdeck.errors import FlightdeckError
    from flightdeck.experiments.definitions import load_definition

    path = ctx.exercises_dir / AA_DEFINITION
    try:
        definition = load_definition(path)
    except FlightdeckError as exc:
        found = Criterion(False, f"an experiment definition {AA_DEFINITION} in exercises/ under FLIGHTDECK_HOME is valid",
                          str(exc))
        return [found, needs(found, "it is an A/A test"), needs(found, "its report shows a sample-ratio mismatch"),
                needs(found, "your explanation matches the report and the route table")]
    found = Criterion(True, f"an experiment definition {AA_DEFINITION} in exercises/ under FLIGHTDECK_HOME is valid",
                      f"experiment {definition.name!r} on endpoint {definition.endpoint!r}")
    versions = {name: ctx.resolve_ref({"alias": v.alias, "version": v.version})
                for name, v in definition.variants.items()}
    _, spec = ctx.endpoint(definition.endpoint)
    route_versions = {n: ctx.resolve_ref(v) for n, v in ((spec or {}).get("variants") or {}).items()}
    same = len(set(versions.values())) == 1 and None not in versions.values() \
        and set(route_versions.values()) == set(versions.values())
    aa = Criterion(same and spec is not None and spec.get("policy") == "ab",
                   "it is an A/A test: every arm, in the definition and on its `ab` endpoint, serves one version",
                   f"definition arms {versions}; endpoint {definition.endpoint!r} arms {route_versions or 'missing'}")
    report_path, report = _latest_report(ctx.settings.reports_dir / "experiments" / definition.name)
    srm = (report or {}).get("srm") or {}
    tripped = Criterion(bool(srm.get("mismatch")), "its latest experiment report shows a sample-ratio mismatch "
                        "(p < 0.001), which blocks every decision",
                        f"{report_path}: SRM p = {srm.get('p_value')}" if report_path else
                        f"no report under {ctx.settings.reports_dir / 'experiments' / definition.name}")
    answer, data = answer_file_criterion(ctx, 13, ["srm_p_value", "overrepresented_variant", "route_weights"])
    criteria = [found, aa, tripped, answer]
    if data is None or not srm:
        return criteria
    observed, expected = srm.get("observed_share") or {}, _shares(srm.get("expected_share") or {})
    over = max(observed, key=lambda k: observed[k] - expected.get(k, 0)) if observed else None
    p = float(srm["p_value"])
    criteria.append(Criterion(close(data["srm_p_value"], p, rel=0.01, abs_tol=1e-12),
                              "`srm_p_value` is the report's chi-square p-value",
                              f"you wrote {data['srm_p_value']!r}; the report says {p:.3g}"))
    criteria.append(Criterion(str(data["overrepresented_variant"]) == str(over),
                              "`overrepresented_variant` is the arm that got more units than the design expects",
                              f"you wrote {data['overrepresented_variant']!r}; observed shares {observed}, "
                              f"expected {expected}"))
    written = data["route_weights"] if isinstance(data["route_weights"], dict) else {}
    actual = _shares((spec or {}).get("weights") or {})
    try:
        learner = _shares(written)
    except (TypeError, ValueError):
        learner = {}
    matches = bool(actual) and set(learner) == set(actual) and all(abs(learner[k] - actual[k]) < 1e-9 for k in actual)
    differs = bool(actual) and any(abs(actual.get(k, 0) - expected.get(k, 0)) > 1e-9 for k in expected)
    criteria.append(Criterion(matches and differs,
                              "`route_weights` are the endpoint's weights in the route table, and they differ "
                              "from the definition's (the cause of the mismatch)",
                              f"you wrote {written}; the route table has {(spec or {}).get('weights')}; "
                              f"the definition expects {srm.get('expected_share')}"))
    return criteria


# ---- 14 sample size -------------------------------------------------------------------------------
def check_14(ctx: Context) -> list[Criterion]:
    from flightdeck.data.partitions import read_window
    from flightdeck.experiments.design import sample_size_proportions

    answer, data = answer_file_criterion(ctx, 14, ["baseline", "units_per_arm", "units_per_arm_sequential"])
    if data is None:
        return [answer]
    raw = read_window(ctx.settings.raw_dir, "2026-01-01", "2026-01-21")
    rate = float(raw["label"].mean())
    baseline = Criterion(close(data["baseline"], rate, rel=0, abs_tol=0.005),
                         "`baseline` is the default rate (mean label) of the raw data 2026-01-01 … 2026-01-21 (±0.005)",
                         f"you wrote {data['baseline']!r}; the data give {rate:.4f}")
    criteria = [answer, baseline]
    if not baseline.met:
        return [*criteria, needs(baseline, "`units_per_arm` is the fixed-horizon sample size"),
                needs(baseline, "`units_per_arm_sequential` is the sequential one")]
    base = float(data["baseline"])
    fixed = sample_size_proportions(base, SAMPLE_SIZE_MDE)
    sequential = sample_size_proportions(base, SAMPLE_SIZE_MDE, sequential=True)
    criteria.append(Criterion(str(data["units_per_arm"]) == str(fixed),
                              f"`units_per_arm` is the fixed-horizon size for a {SAMPLE_SIZE_MDE} absolute lift "
                              "(alpha 0.05, power 0.8) at your baseline",
                              f"you wrote {data['units_per_arm']!r}; flightdeck.experiments.design gives {fixed}"))
    criteria.append(Criterion(str(data["units_per_arm_sequential"]) == str(sequential),
                              "`units_per_arm_sequential` is the size when you look every day (sequential=True)",
                              f"you wrote {data['units_per_arm_sequential']!r}; the design module gives {sequential}"))
    return criteria


# ---- 15 shadow ------------------------------------------------------------------------------------
def check_15(ctx: Context) -> list[Criterion]:
    champion, challenger = ctx.alias("champion"), ctx.alias("challenger")
    _, spec = ctx.endpoint("shadow-lab")
    shadow = (spec or {}).get("shadow") or {}
    variants = (spec or {}).get("variants") or {}
    live = [n for n in variants if n != shadow.get("variant")]
    set_up = Criterion(spec is not None and bool(shadow) and float(shadow.get("percent", 100)) == 100
                       and ctx.resolve_ref(variants.get(shadow.get("variant"), {})) == challenger
                       and [ctx.resolve_ref(variants[n]) for n in live] == [champion],
                       "endpoint `shadow-lab` answers with the champion and mirrors every request to the challenger",
                       f"endpoint spec {json.dumps(spec) if spec else 'missing'}")
    report_path, report = _latest_report(ctx.settings.reports_dir / "shadow" / "shadow-lab")
    pairs = int((report or {}).get("pairs") or 0)
    evaluated = Criterion(report is not None and pairs >= 200,
                          "a shadow evaluation report for `shadow-lab` covers at least 200 paired rows",
                          f"{report_path}: {pairs} pairs" if report_path else
                          f"no report under {ctx.settings.reports_dir / 'shadow' / 'shadow-lab'}")
    answer, data = answer_file_criterion(ctx, 15, ["agreement", "recommendation", "most_disagreeing_feature"])
    criteria = [set_up, evaluated, answer]
    if data is None or report is None:
        return criteria
    agreement = ((report.get("agreement") or {}).get("estimate"))
    criteria.append(Criterion(agreement is not None and close(data["agreement"], agreement, rel=0, abs_tol=0.001),
                              "`agreement` is the report's share of rows where both models decide alike (±0.001)",
                              f"you wrote {data['agreement']!r}; the report says {agreement}"))
    criteria.append(Criterion(str(data["recommendation"]) == str(report.get("recommendation")),
                              "`recommendation` is the report's recommendation",
                              f"you wrote {data['recommendation']!r}; the report says {report.get('recommendation')!r}"))
    segments = report.get("segments") or []
    top = segments[0]["feature"] if segments else None
    criteria.append(Criterion(top is not None and str(data["most_disagreeing_feature"]) == top,
                              "`most_disagreeing_feature` is the feature of the report's most disagreeing segment",
                              f"you wrote {data['most_disagreeing_feature']!r}; the report's first segment is "
                              f"{segments[0] if segments else None}"))
    return criteria
