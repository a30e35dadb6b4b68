"""Analyse an experiment: definition + logged data → tests → a decision (ship / stop / keep running).

The order is fixed, and each step can block the next:
1. **Sample-ratio mismatch** on the units per variant against the definition's weights
   (chi-square, p < `srm_threshold`, default 0.001). A mismatch means assignment or logging is
   broken, so no verdict is given. A bandit re-weights on purpose, so its units are checked
   against the weights it had set instead: each day's new units times the weights in force that
   day (`weight_history`; `weight_history_from_routes` derives it from the route-table version
   that assigned each unit); a day with units but no known weights leaves the check not run, with
   the reason in `srm_note` and among the decision's reasons, never a silent pass.
2. **Enough data**: every variant needs `min_units_per_variant` units; otherwise the status
   is `insufficient_data` and the action `keep_running`, never a crash or a verdict.
3. **Tests** per treatment against the control, for every metric: the fixed-horizon test
   (two-proportion z, Welch t or CUPED for one value per unit; the delta method when a unit
   contributes several rows) and the always-valid mSPRT, run on every day's cumulative data
   so its p-value can be carried from look to look.
4. **Multiple metrics**: Holm over guardrails, Benjamini-Hochberg over secondary metrics,
   Holm over the treatments for the primary metric when there are several.
5. **Power** reached for the minimum detectable effect (`flightdeck.experiments.design`).
6. **Decision** by the policy's stopping rule (`stopping_rule_text`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Literal

import numpy as np
import pandas as pd

from flightdeck.experiments import design, sequential
from flightdeck.experiments.definitions import ExperimentDefinition
from flightdeck.experiments.inference import (
    Comparison,
    InsufficientDataError,
    cuped,
    delta_ratio,
    ratio_and_variance,
    two_proportion_z,
    welch_t,
)
from flightdeck.experiments.metrics import METRICS, ExperimentData, den, num
from flightdeck.experiments.multiple import adjust
from flightdeck.experiments.sequential import SequentialResult
from flightdeck.experiments.srm import SrmResult, srm_check

Action = Literal["ship", "stop", "keep_running"]
Status = Literal["decided", "running", "insufficient_data", "srm_mismatch"]
Role = Literal["primary", "secondary", "guardrail"]


@dataclass(frozen=True)
class Decision:
    """What to do with the experiment, and why. `ship_variant` names the winner when action is ship."""

    action: Action
    status: Status
    reasons: list[str]
    ship_variant: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MetricResult:
    """One metric of one treatment against the control."""

    metric: str
    role: Role
    treatment: str
    comparison: Comparison | None = None
    sequential: SequentialResult | None = None
    decision_p_value: float | None = None  # the always-valid p (sequential, bandit) or the fixed one
    adjusted_p_value: float | None = None
    reject: bool = False              # significant after the role's multiple-testing correction
    harmful: bool = False             # significant and in the wrong direction (beyond any tolerance)
    note: str = ""                    # e.g. why there is no result

    def to_dict(self) -> dict:
        return {"metric": self.metric, "role": self.role, "treatment": self.treatment,
                "comparison": self.comparison.to_dict() if self.comparison else None,
                "sequential": self.sequential.to_dict() if self.sequential else None,
                "decision_p_value": self.decision_p_value, "adjusted_p_value": self.adjusted_p_value,
                "reject": self.reject, "harmful": self.harmful, "note": self.note}


@dataclass(frozen=True)
class DailyPoint:
    """The primary metric of one treatment, on the cumulative data up to `day`."""

    day: date
    treatment: str
    units: dict[str, int]
    srm_p_value: float | None
    difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    sequential_ci_low: float | None = None
    sequential_ci_high: float | None = None
    sequential_p_value: float | None = None
    power: float | None = None

    def to_dict(self) -> dict:
        return {**asdict(self), "day": self.day.isoformat()}


@dataclass
class PowerStatus:
    """Units per arm needed for the minimum detectable effect, and how far the test has got."""

    treatment: str
    baseline: float | None
    sd: float | None
    required_per_arm: int | None
    units_control: int
    units_treatment: int
    power: float | None

    @property
    def reached(self) -> bool:
        return self.required_per_arm is not None and min(self.units_control, self.units_treatment) >= \
            self.required_per_arm

    def to_dict(self) -> dict:
        return {**asdict(self), "reached": self.reached}


@dataclass
class ExperimentAnalysis:
    """Everything one look at an experiment found; `to_dict` is what reports and XCom carry."""

    definition: ExperimentDefinition
    as_of: date
    day_index: int                    # 1 on the start date
    units: dict[str, int]
    srm: SrmResult | None
    results: list[MetricResult]
    power: list[PowerStatus]
    history: list[DailyPoint]
    decision: Decision
    data_notes: dict = field(default_factory=dict)
    srm_note: str = ""                # why the sample-ratio check did not run, when it did not

    def result(self, metric: str, treatment: str) -> MetricResult | None:
        return next((r for r in self.results if r.metric == metric and r.treatment == treatment), None)

    def to_dict(self) -> dict:
        return {"experiment": self.definition.name, "as_of": self.as_of.isoformat(), "day_index": self.day_index,
                "policy": self.definition.policy, "units": self.units,
                "srm": self.srm.to_dict() if self.srm else None,
                "results": [r.to_dict() for r in self.results], "power": [p.to_dict() for p in self.power],
                "history": [h.to_dict() for h in self.history], "decision": self.decision.to_dict(),
                "data_notes": self.data_notes, "srm_note": self.srm_note,
                "definition": self.definition.model_dump(mode="json")}


# ---- one comparison --------------------------------------------------------------------------
def _arm_values(units: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """Per-unit numerator and denominator of a metric, for units where it is defined (den > 0)."""
    frame = units[units[den(metric)] > 0]
    return frame[num(metric)].to_numpy(float), frame[den(metric)].to_numpy(float), frame["unit"]


def _covariates(pre: pd.DataFrame | None, metric: str, unit_ids: pd.Index) -> np.ndarray | None:
    """Each unit's pre-period value of the metric; units unseen before get the pre-period mean
    (the usual CUPED fill: it leaves their adjustment at zero)."""
    if pre is None:
        return None
    seen = pre[pre[den(metric)] > 0]
    if len(seen) < 2:
        return None
    values = seen[num(metric)] / seen[den(metric)]
    return values.reindex(unit_ids.to_numpy()).fillna(values.mean()).to_numpy(float)


def compare(metric: str, control: pd.DataFrame, treatment: pd.DataFrame, alpha: float, *,
            previous_p_value: float = 1.0, pre_period: pd.DataFrame | None = None,
            arms: tuple[str, str] = ("control", "treatment")) -> tuple[Comparison, SequentialResult]:
    """Fixed-horizon and always-valid tests of one metric between two arms' per-unit sums.

    Raises InsufficientDataError when an arm has too few units or no variation.
    """
    n_c, d_c, ids_c = _arm_values(control, metric)
    n_t, d_t, ids_t = _arm_values(treatment, metric)
    for arm, values in ((arms[0], n_c), (arms[1], n_t)):
        if len(values) < 2:
            raise InsufficientDataError(metric, arm, f"{len(values)} unit(s) with this metric (needs 2)")
    spec = METRICS[metric]
    if (d_c == 1).all() and (d_t == 1).all():  # one row per unit: the unit's value is the row's
        binary = np.isin(n_c, (0, 1)).all() and np.isin(n_t, (0, 1)).all()
        if spec.kind != "mean" and binary:
            s_c, s_t = int(n_c.sum()), int(n_t.sum())
            fixed = two_proportion_z(s_c, len(n_c), s_t, len(n_t), alpha=alpha, metric=metric)
            seq = sequential.msprt_proportions(s_c, len(n_c), s_t, len(n_t), alpha=alpha,
                                               previous_p_value=previous_p_value, metric=metric)
            return fixed, seq
        x_c, x_t = _covariates(pre_period, metric, ids_c), _covariates(pre_period, metric, ids_t)
        if x_c is not None and x_t is not None:
            fixed = cuped(n_c, x_c, n_t, x_t, alpha=alpha, metric=metric)
        else:
            fixed = welch_t(n_c, n_t, alpha=alpha, metric=metric)
        seq = sequential.msprt_means(n_c.mean(), n_c.var(ddof=1), len(n_c), n_t.mean(), n_t.var(ddof=1),
                                     len(n_t), alpha=alpha, previous_p_value=previous_p_value, metric=metric)
        return fixed, seq
    fixed = delta_ratio(n_c, d_c, n_t, d_t, alpha=alpha, metric=metric)
    # The mSPRT takes a mean and a per-unit variance; for a ratio that is the ratio and n times
    # its delta-method variance (the variance of the linearised per-unit values).
    (r_c, v_c), (r_t, v_t) = ratio_and_variance(n_c, d_c), ratio_and_variance(n_t, d_t)
    seq = sequential.msprt_means(r_c, v_c * len(n_c), len(n_c), r_t, v_t * len(n_t), len(n_t), alpha=alpha,
                                 previous_p_value=previous_p_value, metric=metric)
    return fixed, seq


def _power(definition: ExperimentDefinition, treatment: str, control_units: pd.DataFrame,
           treatment_units: pd.DataFrame) -> PowerStatus:
    """Required units per arm for the MDE (fixed or sequential) and the power at today's size."""
    metric = definition.primary_metric
    n_c, d_c, _ = _arm_values(control_units, metric)
    n_t = len(_arm_values(treatment_units, metric)[0])
    status = PowerStatus(treatment, None, None, None, len(n_c), n_t, None)
    if len(n_c) < 2:
        return status
    ratio = definition.variants[treatment].weight / definition.variants[definition.control].weight
    mde, alpha = definition.minimum_detectable_effect, definition.alpha
    seq = definition.policy != "fixed"
    baseline, variance = ratio_and_variance(n_c, d_c)
    n_now = min(len(n_c), n_t)
    try:
        if METRICS[metric].kind == "proportion" and 0 < baseline < 1:
            status.baseline = baseline
            status.required_per_arm = design.sample_size_proportions(baseline, mde, alpha=alpha,
                                                                     power=definition.power, ratio=ratio,
                                                                     sequential=seq)
            status.power = design.power_proportions(baseline, mde, n_now, alpha=alpha) if n_now else 0.0
        else:
            sd = math.sqrt(variance * len(n_c))  # per-unit sd (delta method for ratios)
            if sd > 0:
                status.baseline, status.sd = baseline, sd
                status.required_per_arm = design.sample_size_means(sd, mde, alpha=alpha, power=definition.power,
                                                                   ratio=ratio, sequential=seq)
                status.power = design.power_means(sd, mde, n_now, alpha=alpha) if n_now else 0.0
    except (ValueError, ArithmeticError):  # a degenerate baseline (e.g. 0 or 1): no design
        pass
    return status


# ---- the whole analysis ----------------------------------------------------------------------
def _units_per_variant(units: pd.DataFrame, variants: list[str]) -> dict[str, int]:
    counts = units.groupby("variant")["unit"].nunique() if len(units) else pd.Series(dtype=int)
    return {v: int(counts.get(v, 0)) for v in variants}


WeightHistory = Mapping[date, Mapping[str, float]]


def weight_history_from_routes(assignments, route_weights: Mapping[int, Mapping[str, float] | None],
                               variants: list[str]) -> dict[date, dict[str, float]]:
    """The bandit's assignment probabilities per day, from the route versions that assigned each unit.

    `assignments` is `ExperimentData.assignments` (each unit's first assignment and the route-table
    version in force for it); `route_weights` maps a route version to the endpoint's weights in
    that version (None when the version is unknown or does not split traffic by weights). A day's
    entry is the mean, over the units first assigned that day, of their version's weights over
    `variants` (normalised), so Σ_days new units × that day's entry is exactly the expected number
    of units per arm. A day with a unit whose version has no usable weights is left out, and the
    sample-ratio check then says that day's weights are not known.
    """
    shares: dict[int, dict[str, float] | None] = {}
    for version, weights in route_weights.items():
        values = {v: float((weights or {}).get(v, 0.0)) for v in variants}
        total = sum(values.values())
        ok = weights is not None and all(math.isfinite(w) and w >= 0 for w in values.values()) and total > 0
        shares[int(version)] = {v: w / total for v, w in values.items()} if ok else None
    history: dict[date, dict[str, float]] = {}
    if assignments is None or not len(assignments):
        return history
    for day, group in assignments.groupby("day"):
        known = [shares.get(int(version)) for version in group["route_version"]]
        if any(k is None for k in known):
            continue
        history[day] = {v: sum(k[v] for k in known) / len(known) for v in variants}
    return history


def _first_day_counts(data: ExperimentData, through: date, variants: list[str]) -> dict[date, dict[str, int]]:
    """New units per day (a unit counts on the first day it was logged, in that day's variant).

    With `data.assignments` these are first assignments, units later seen in another variant included
    (under a bandit a sticky unit moves arm when the weights move; leaving it out would starve the arm
    it was first assigned to); otherwise they come from the per-day sums."""
    if data.assignments is not None:
        first = data.assignments[data.assignments["day"] <= through]
        out: dict[date, dict[str, int]] = {}
        for (day, variant), n in first.groupby(["day", "variant"])["unit"].nunique().items():
            if variant in variants:
                out.setdefault(day, {v: 0 for v in variants})[variant] = int(n)
        return out
    frame = data.unit_days[data.unit_days["day"] <= through] if len(data.unit_days) else data.unit_days
    if not len(frame):
        return {}
    first = frame.groupby(["variant", "unit"], as_index=False)["day"].min()
    table = first.groupby(["day", "variant"])["unit"].nunique()
    out: dict[date, dict[str, int]] = {}
    for (day, variant), n in table.items():
        if variant in variants:
            out.setdefault(day, {v: 0 for v in variants})[variant] = int(n)
    return out


def _bandit_expected_shares(definition: ExperimentDefinition, data: ExperimentData, through: date,
                            weight_history: WeightHistory | None) -> tuple[dict[str, float] | None, str]:
    """Expected share per arm under the weights the bandit set: Σ_days new units × weight in force
    that day, normalised; or (None, why not) when a day with units has no known weights."""
    variants = list(definition.variants)
    per_day = _first_day_counts(data, through, variants)
    history = weight_history or {}
    missing = sorted(day for day in per_day if day not in history)
    if missing:
        shown = ", ".join(d.isoformat() for d in missing[:5]) + (" …" if len(missing) > 5 else "")
        return None, (f"sample-ratio check not run: the bandit's weights in force on {shown} are not known "
                      "(no route-table version with weights for these arms is on record for that day's units); "
                      "keep the gateway's route history, or pass the weight history of every day with units")
    expected = {v: 0.0 for v in variants}
    for day, counts in per_day.items():
        weights = history[day]
        total = sum(float(weights.get(v, 0.0)) for v in variants)
        if not (math.isfinite(total) and total > 0):
            return None, (f"sample-ratio check not run: the bandit's weights for {day.isoformat()} "
                          f"({dict(weights)}) give the arms no traffic")
        for v in variants:
            expected[v] += sum(counts.values()) * float(weights.get(v, 0.0)) / total
    if any(e <= 0 for e in expected.values()):
        starved = [v for v, e in expected.items() if e <= 0]
        return None, f"sample-ratio check not run: the bandit's weights give {starved} no traffic on any day"
    return expected, ""


def _srm(definition: ExperimentDefinition, data: ExperimentData, through: date, counts: dict[str, int],
         weight_history: WeightHistory | None) -> tuple[SrmResult | None, str]:
    """The sample-ratio check of the units up to `through`, or (None, why it did not run)."""
    if sum(counts.values()) == 0:
        return None, ""  # no units, nothing to compare
    shares: Mapping[str, float] | None = definition.weights
    if definition.policy == "bandit":  # the weights move on purpose: check against those it set
        shares, note = _bandit_expected_shares(definition, data, through, weight_history)
        if shares is None:
            return None, note
        if data.assignments is not None:  # the same units as the expectation: first assignments
            per_day = _first_day_counts(data, through, list(definition.variants))
            counts = {v: sum(day[v] for day in per_day.values()) for v in definition.variants}
    return srm_check(counts, shares, threshold=definition.srm_threshold), ""


def _split(units: pd.DataFrame, variant: str) -> pd.DataFrame:
    return units[units["variant"] == variant]


def analyse(definition: ExperimentDefinition, data: ExperimentData, as_of: date,
            weight_history: WeightHistory | None = None) -> ExperimentAnalysis:
    """Look at the experiment with every unit logged up to the end of `as_of` (a UTC day).

    `weight_history` (bandit only): the share of traffic per arm in force on each day, as the
    bandit set them; the sample-ratio check of a bandit needs every day that has units.
    """
    variants = list(definition.variants)
    day_index = (as_of - definition.start_date).days + 1
    alpha = definition.alpha
    metrics = definition.metric_names
    pre = data.pre_period if definition.cuped else None

    # Every day's cumulative look, oldest first: always-valid p-values are carried forward
    # (their running minimum is what the stopping rule uses) and the history feeds the plots.
    previous: dict[tuple[str, str], float] = {}
    latest: dict[tuple[str, str], tuple[Comparison, SequentialResult] | str] = {}
    history: list[DailyPoint] = []
    days = [definition.start_date + timedelta(days=k) for k in range(max(day_index, 0))]
    for day in days:
        units = data.units_through(day)
        counts = _units_per_variant(units, variants)
        srm_day, _ = _srm(definition, data, day, counts, weight_history)
        control = _split(units, definition.control)
        for treatment in definition.treatments:
            arm = _split(units, treatment)
            for metric in metrics:
                key = (metric, treatment)
                try:
                    fixed, seq = compare(metric, control, arm, alpha, previous_p_value=previous.get(key, 1.0),
                                         pre_period=pre if metric == definition.primary_metric else None,
                                         arms=(definition.control, treatment))
                except InsufficientDataError as exc:
                    latest[key] = str(exc)
                    continue
                # An overwhelming effect underflows the p-value to 0.0, which the next look refuses.
                previous[key] = max(seq.p_value, np.finfo(float).tiny)
                latest[key] = (fixed, seq)
            primary = latest.get((definition.primary_metric, treatment))
            power = _power(definition, treatment, control, arm).power
            point = DailyPoint(day, treatment, counts, srm_day.p_value if srm_day else None, power=power)
            if isinstance(primary, tuple):  # every metric is re-tested each day: this is today's
                fixed, seq = primary
                point = DailyPoint(day, treatment, counts, point.srm_p_value, fixed.difference, fixed.ci_low,
                                   fixed.ci_high, seq.ci_low, seq.ci_high, seq.p_value, power)
            history.append(point)

    units = data.units_through(as_of)
    counts = _units_per_variant(units, variants)
    srm, srm_note = _srm(definition, data, as_of, counts, weight_history)
    results = _results(definition, latest)
    power = [_power(definition, t, _split(units, definition.control), _split(units, t))
             for t in definition.treatments]
    notes = {"rows_without_unit": data.rows_without_unit, "unexpected_variants": data.unexpected_variants,
             "units_in_several_variants": data.units_in_several_variants, "model_versions": data.model_versions,
             "cuped": bool(definition.cuped and pre is not None)}
    decision = decide(definition, day_index, counts, srm, results, power)
    if srm_note:
        decision = Decision(decision.action, decision.status, [*decision.reasons, srm_note], decision.ship_variant)
    return ExperimentAnalysis(definition, as_of, day_index, counts, srm, results, power, history, decision, notes,
                              srm_note)


def _results(definition: ExperimentDefinition, latest: dict) -> list[MetricResult]:
    """MetricResults of the last look, with the decision p-value and multiple-testing adjustments."""
    uses_sequential = definition.policy != "fixed"
    results: list[MetricResult] = []
    roles: list[tuple[str, Role]] = [(definition.primary_metric, "primary")]
    roles += [(m, "secondary") for m in definition.secondary_metrics if m != definition.primary_metric]
    roles += [(g.metric, "guardrail") for g in definition.guardrails]
    for treatment in definition.treatments:
        for metric, role in roles:
            found = latest.get((metric, treatment))
            result = MetricResult(metric, role, treatment)
            if isinstance(found, tuple):
                result.comparison, result.sequential = found
                result.decision_p_value = found[1].p_value if uses_sequential else found[0].p_value
            else:
                result.note = "insufficient data" + (f": {found}" if found else "")
            results.append(result)

    def adjust_group(group: list[MetricResult], method: str) -> None:
        tested = {f"{r.metric}|{r.treatment}|{i}": r for i, r in enumerate(group) if r.decision_p_value is not None}
        if not tested:
            return
        adjusted = adjust({k: r.decision_p_value for k, r in tested.items()}, method=method, alpha=definition.alpha)
        for key, r in tested.items():
            r.adjusted_p_value, r.reject = adjusted[key].adjusted_p_value, adjusted[key].reject

    adjust_group([r for r in results if r.role == "primary"], "holm")
    tolerance = {g.metric: g.tolerance for g in definition.guardrails}
    for treatment in definition.treatments:
        adjust_group([r for r in results if r.role == "guardrail" and r.treatment == treatment], "holm")
        adjust_group([r for r in results if r.role == "secondary" and r.treatment == treatment], "fdr_bh")
    for r in results:
        if r.reject and r.comparison is not None:
            difference = r.comparison.difference
            beyond = abs(difference) > tolerance.get(r.metric, 0.0) if r.role == "guardrail" else True
            r.harmful = METRICS[r.metric].harmful(difference) and beyond
    return results


def decide(definition: ExperimentDefinition, day_index: int, counts: dict[str, int], srm: SrmResult | None,
           results: list[MetricResult], power: list[PowerStatus]) -> Decision:
    """The policy's stopping rule applied to one look (see `stopping_rule_text`)."""
    short = [f"variant {v!r} has {n} unit(s) (needs ≥ {definition.min_units_per_variant})"
             for v, n in counts.items() if n < definition.min_units_per_variant]
    srm_reason = (f"sample-ratio mismatch: units {srm.observed} against shares {srm.expected_share}, "
                  f"chi-square p = {srm.p_value:.2g} < {srm.threshold:g}; assignment or logging is broken, "
                  "so no result can be trusted. Fix the cause and restart the experiment"
                  if srm is not None and srm.mismatch else None)
    if short:
        return Decision("keep_running", "insufficient_data",
                        ["insufficient data: " + "; ".join(short)] + ([srm_reason] if srm_reason else []))
    if srm_reason:
        return Decision("keep_running", "srm_mismatch", [srm_reason])

    expired = day_index >= definition.max_duration_days
    fixed = definition.policy == "fixed"
    by_power = {p.treatment: p for p in power}
    reasons: list[str] = []
    primaries = [r for r in results if r.role == "primary"]
    if all(r.comparison is None for r in primaries):
        return Decision("keep_running", "insufficient_data",
                        [f"insufficient data for the primary metric {definition.primary_metric!r}: "
                         + "; ".join(r.note for r in primaries)])
    horizon = expired or all(by_power[t].reached for t in definition.treatments)
    if fixed and not horizon:
        progress = ", ".join(f"{p.treatment}: {min(p.units_control, p.units_treatment)} of "
                             f"{p.required_per_arm if p.required_per_arm is not None else '?'} units per arm"
                             for p in power)
        return Decision("keep_running", "running",
                        [f"fixed horizon not reached ({progress}); a fixed-horizon test is only read at its "
                         "planned size"])

    harms = [r for r in results if r.role == "guardrail" and r.harmful]
    blind = [r for r in results if r.role == "guardrail" and r.comparison is None]
    if harms:
        return Decision("stop", "decided", [
            f"guardrail {r.metric} is worse in {r.treatment}: {_effect(r)} (Holm-adjusted p = "
            f"{r.adjusted_p_value:.3g})" for r in harms])
    winners, losers = [], []
    for r in primaries:
        if r.comparison is None or not r.reject:
            continue
        (losers if METRICS[r.metric].harmful(r.comparison.difference) else winners).append(r)
    if winners and not blind:
        best = max(winners, key=lambda r: -r.comparison.difference if not METRICS[r.metric].higher_is_better
                   else r.comparison.difference)
        reasons = [f"{best.metric} is better in {best.treatment}: {_effect(best)} "
                   f"(p = {best.decision_p_value:.3g}, adjusted {best.adjusted_p_value:.3g} < α = {definition.alpha:g})",
                   "no guardrail shows a significant harm"]
        return Decision("ship", "decided", reasons, best.treatment)
    if winners and blind:
        return Decision("keep_running", "running", [
            f"{definition.primary_metric} is better in {', '.join(r.treatment for r in winners)}, but guardrail(s) "
            f"{', '.join(sorted({r.metric for r in blind}))} have no data yet: not shipping blind"])
    if losers and len(losers) == len(primaries):
        return Decision("stop", "decided", [f"{r.metric} is worse in {r.treatment}: {_effect(r)} "
                                            f"(p = {r.decision_p_value:.3g})" for r in losers])
    if expired or fixed:
        return Decision("stop", "decided", [
            f"no significant difference in {definition.primary_metric} "
            + ("by the planned sample size" if fixed and not expired else
               f"within the maximum duration of {definition.max_duration_days} day(s)")
            + f" (minimum detectable effect {definition.minimum_detectable_effect:g})"])
    return Decision("keep_running", "running", [
        f"day {day_index} of at most {definition.max_duration_days}: no always-valid p-value of "
        f"{definition.primary_metric} is below α = {definition.alpha:g} yet"])


def _effect(r: MetricResult) -> str:
    c = r.comparison
    lift = f", {c.relative_lift:+.1%}" if c.relative_lift is not None else ""
    return (f"{c.control_value:.4g} → {c.treatment_value:.4g} ({c.difference:+.4g}{lift}, "
            f"{1 - c.alpha:.0%} CI [{c.ci_low:+.4g}, {c.ci_high:+.4g}])")


def stopping_rule_text(definition: ExperimentDefinition) -> str:
    """The rule this experiment's decision follows, in words (rendered in reports)."""
    common = (f"The sample-ratio check runs first: a chi-square p-value below {definition.srm_threshold:g} on the "
              "units per variant blocks every decision. A variant with fewer than "
              f"{definition.min_units_per_variant} units gives 'insufficient data', not a verdict. Guardrails "
              "are tested with Holm's correction and fail on a significant harm beyond their tolerance; "
              "secondary metrics are corrected with Benjamini-Hochberg and inform, they do not decide. ")
    if definition.policy == "fixed":
        return common + (
            f"Fixed horizon: the primary metric ({definition.primary_metric}) is read once, when every arm has "
            f"the planned number of units for a minimum detectable effect of "
            f"{definition.minimum_detectable_effect:g} at α = {definition.alpha:g} and power {definition.power:g} "
            f"(or on day {definition.max_duration_days}). Ship if it is significantly better and no guardrail "
            "fails; otherwise stop. Looking earlier is not a decision.")
    bandit = (" The bandit moves traffic between arms every day (Thompson sampling); the tests below still "
              "decide when to stop." if definition.policy == "bandit" else "")
    return common + (
        f"Sequential: {sequential.STOPPING_RULE} Ship as soon as the primary metric "
        f"({definition.primary_metric}) is significantly better and no guardrail fails; stop as soon as it is "
        f"significantly worse or a guardrail fails, or on day {definition.max_duration_days} without a "
        f"result.{bandit}")


def bandit_counts(definition: ExperimentDefinition, data: ExperimentData,
                  as_of: date | None = None) -> tuple[dict[str, int], dict[str, int]]:
    """(successes, trials) per arm for the bandit: the primary proportion's numerator and
    denominator summed over the arm's rows (a Beta-Bernoulli reward per scored row)."""
    units = data.units_through(as_of)
    metric = definition.primary_metric
    successes, trials = {}, {}
    for variant in definition.variants:
        arm = _split(units, variant)
        successes[variant] = int(round(arm[num(metric)].sum()))
        trials[variant] = int(round(arm[den(metric)].sum()))
    return successes, trials
