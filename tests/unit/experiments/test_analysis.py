"""The analysis: SRM first, insufficient data, tests per policy, corrections and the decision."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flightdeck.experiments.analysis import analyse, stopping_rule_text
from flightdeck.experiments.metrics import aggregate
from flightdeck.experiments.sequential import STOPPING_RULE
from tests.unit.experiments.support import START, definition, rows

DAY4 = START + timedelta(days=3)


def _run(d, frame, as_of=DAY4):
    return analyse(d, aggregate(frame, list(d.variants), 0.5), as_of)


@pytest.fixture(scope="module")
def better():
    return rows(2000, better_b=0.25)


def test_a_clearly_better_treatment_ships_with_reasons(better):
    a = _run(definition(), better)
    assert a.decision.action == "ship" and a.decision.ship_variant == "b"
    assert "log_loss is better in b" in a.decision.reasons[0]
    primary = a.result("log_loss", "b")
    assert primary.sequential.p_value < 0.05 and primary.decision_p_value == primary.sequential.p_value
    assert not a.srm.mismatch and len(a.history) == 4
    # always-valid p-values never rise from one look to the next
    ps = [h.sequential_p_value for h in a.history]
    assert all(later <= earlier for earlier, later in zip(ps, ps[1:], strict=False))


def test_the_same_data_under_a_worse_treatment_stops(better):
    swapped = better.assign(variant=better["variant"].map({"a": "b", "b": "a"}))
    a = _run(definition(), swapped)
    assert a.decision.action == "stop" and "worse in b" in a.decision.reasons[0]


def test_a_sample_ratio_mismatch_blocks_a_decision():
    a = _run(definition(), rows(4000, share_b=0.45, better_b=0.25))
    assert a.srm.mismatch and a.decision.status == "srm_mismatch" and a.decision.action == "keep_running"
    assert "sample-ratio mismatch" in a.decision.reasons[0]


@pytest.mark.parametrize("frame", [rows(300, share_b=0.0), rows(0).reindex(columns=rows(2).columns)],
                         ids=["treatment without data", "no data at all"])
def test_variants_without_data_are_insufficient_not_a_crash(frame):
    a = _run(definition(), frame)
    assert a.decision.status == "insufficient_data" and a.decision.action == "keep_running"
    assert "insufficient data" in a.decision.reasons[0]
    assert all(r.comparison is None and "insufficient data" in r.note for r in a.results)


def test_before_the_start_date_nothing_is_decided():
    a = _run(definition(), rows(100), as_of=START - timedelta(days=1))
    assert a.day_index == 0 and a.decision.status == "insufficient_data" and a.history == []


def test_fixed_horizon_waits_for_the_planned_size_and_then_decides(better):
    waiting = _run(definition(policy="fixed", minimum_detectable_effect=0.005), better)
    assert waiting.decision.action == "keep_running" and "fixed horizon not reached" in waiting.decision.reasons[0]
    done = _run(definition(policy="fixed", minimum_detectable_effect=0.2), better)
    assert done.power[0].reached and done.decision.action == "ship"
    assert done.result("log_loss", "b").decision_p_value == done.result("log_loss", "b").comparison.p_value


def test_no_effect_runs_on_then_stops_at_the_maximum_duration():
    frame = rows(2000)
    assert _run(definition(), frame).decision.action == "keep_running"
    expired = _run(definition(max_duration_days=4), frame)
    assert expired.decision.action == "stop" and "maximum duration" in expired.decision.reasons[0]


def test_a_harmful_guardrail_stops_even_when_the_primary_wins(better):
    slow = better.assign(latency_ms=better["latency_ms"] + (better["variant"] == "b") * 20)
    a = _run(definition(), slow)
    assert a.decision.action == "stop" and "guardrail latency_ms" in a.decision.reasons[0]
    assert a.result("latency_ms", "b").harmful and a.result("latency_ms", "b").adjusted_p_value is not None
    tolerant = _run(definition(guardrails=[{"metric": "latency_ms", "tolerance": 50}]), slow)
    assert tolerant.decision.action == "ship"


def test_several_rows_per_unit_use_the_delta_method_and_cuped_uses_the_pre_period(better):
    clustered = rows(600, rows_per_unit=3, better_b=0.25)
    a = _run(definition(), clustered)
    assert a.result("log_loss", "b").comparison.method == "delta_ratio"
    assert a.result("approval_rate", "b").comparison.method == "delta_ratio"
    d = definition(cuped={"pre_period_days": 7})
    data = aggregate(better, list(d.variants), 0.5, pre_rows=better.assign(unit_id=better["unit_id"]))
    assert analyse(d, data, DAY4).result("log_loss", "b").comparison.method == "cuped"


def test_secondary_metrics_use_bh_and_the_rule_is_written_down(better):
    a = _run(definition(), better)
    secondary = [r for r in a.results if r.role == "secondary"]
    assert all(r.adjusted_p_value >= r.decision_p_value for r in secondary)
    assert STOPPING_RULE in stopping_rule_text(a.definition)
    assert "Fixed horizon" in stopping_rule_text(definition(policy="fixed"))
    assert a.to_dict()["decision"]["action"] == "ship"
