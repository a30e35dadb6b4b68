"""The Releases read model: promotion runs (as the Airflow adapter hands them over) to views."""

from __future__ import annotations

from flightdeck.cockpit.charts import cs_panels
from flightdeck.cockpit.releases import release_view
from flightdeck.delivery.gates import GateSettings, decide, evaluate
from flightdeck.delivery.window import VariantWindow
from flightdeck.stats import N_SCORE_BINS

SETTINGS = GateSettings()


def window(requests: int, errors: int, latency_s: float) -> VariantWindow:
    bins = [0] * N_SCORE_BINS
    bins[3] = requests
    return VariantWindow(requests=requests, errors=errors, latency_sum=requests * latency_s,
                         latency_sumsq=requests * (latency_s ** 2 + 1e-6), rows=requests, score_bins=tuple(bins))


def gate_event(candidate_errors: int, *, elapsed: float = 60.0) -> dict:
    report = evaluate(window(4000, 8, 0.010), window(4000, candidate_errors, 0.010), SETTINGS, 0.0025)
    decision = decide(report, elapsed_s=elapsed, bake_s=30, max_s=600, final=False)
    return {"decision": decision.outcome, "reason": decision.reason, "report": report.to_dict(),
            "elapsed_s": elapsed}


ROLLOUT = {"plan": {"strategy": "canary", "model_name": "credit", "steps": [5, 50], "endpoint": "default",
                    "target": "gateway"},
           "baseline_version": "1", "candidate_version": "2"}


def run(tasks: dict, xcom: dict, **extra) -> dict:
    return {"dag_id": "promote_canary", "run_id": "manual__2026-12-01T10:00:00+00:00", "state": extra.pop("state", "success"),
            "start_date": "2026-12-01 10:00:00Z", "end_date": None,
            "tasks": {t: {"state": s, "start_date": f"2026-12-01 10:0{i}:00Z", "end_date": None}
                      for i, (t, s) in enumerate(tasks.items())},
            "xcom": {"resolve_rollout": ROLLOUT, **xcom}, **extra}


def test_a_promoted_run_shows_each_used_step_with_its_report_and_the_outcome():
    view = release_view(run(
        {"resolve_rollout": "success", "step_1_gate": "success", "step_2_gate": "success", "step_3_gate": "success",
         "approve": "success", "finish": "success", "rollback": "skipped"},
        {"step_1_gate": gate_event(8), "step_2_gate": gate_event(9), "step_3_gate": {"decision": "not_in_plan"},
         "finish": {"detail": "every gate passed"}}))
    assert view.outcome == "promoted"
    assert [g.label for g in view.gates] == ["step 1 (5 %)", "step 2 (50 %)"]  # step 3 is not in the plan
    assert view.model == "credit" and view.candidate == "2" and view.baseline == "1"
    error_rate = next(c for c in view.gates[0].checks if c.name == "error_rate")
    assert error_rate.n_baseline == 4000 and error_rate.lower < error_rate.estimate < error_rate.upper
    assert not view.approval_pending


def test_a_failed_gate_is_read_back_from_its_log_and_is_the_reason_for_the_rollback():
    report = evaluate(window(4000, 8, 0.010), window(4000, 240, 0.010), SETTINGS, 0.0025)
    decision = decide(report, elapsed_s=40, bake_s=30, max_s=600, final=False)
    assert decision.outcome == "fail"
    log = (f"[2026-12-01] INFO - gate decision: fail — {decision.reason}\n{report.to_markdown()}\n"
           f"ERROR - metric gate fail: {decision.reason}")
    view = release_view(run(
        {"resolve_rollout": "success", "step_1_gate": "failed", "step_2_gate": "upstream_failed",
         "rollback": "success"},
        {"rollback": {"rolled_back": True, "left_alone": []}}, state="failed",
        failure_logs={"step_1_gate": log}))
    assert view.outcome == "rolled back"
    assert view.why.startswith("step 1 (5 %): fail — error_rate failed")
    gate = view.gates[0]
    assert gate.from_log and gate.decision == "fail"
    parsed = {c.name: c for c in gate.checks}
    original = {c.name: c for c in report.checks}
    assert set(parsed) == set(original)
    for name in ("error_rate", "latency"):
        assert parsed[name].status == original[name].status
        assert parsed[name].n_canary == original[name].n_canary == 4000
    # Rates come back as fractions, to the table's two decimals of a percent.
    assert abs(parsed["error_rate"].canary - original["error_rate"].canary) < 5e-5
    assert abs(parsed["error_rate"].lower - original["error_rate"].lower) < 5e-5


def test_a_parked_approval_is_pending_and_links_to_the_runs_required_actions():
    view = release_view(run(
        {"resolve_rollout": "success", "step_1_gate": "success", "approve": "deferred"},
        {"step_1_gate": gate_event(8)}, state="running",
        approval={"pending": True, "chosen_options": [], "responded_by": None}))
    assert view.outcome == "awaiting approval" and view.approval_pending
    assert view.required_actions_path == (
        "dags/promote_canary/runs/manual__2026-12-01T10%3A00%3A00%2B00%3A00/required_actions")


def test_a_rejected_approval_names_the_answer():
    view = release_view(run(
        {"resolve_rollout": "success", "step_1_gate": "success", "approve": "failed", "rollback": "success"},
        {"step_1_gate": gate_event(8), "rollback": {"rolled_back": True}}, state="failed",
        approval={"pending": False, "chosen_options": ["Reject"], "responded_by": "alice"}))
    assert view.outcome == "rolled back"
    assert view.why == "approval: Reject"


def test_confidence_sequence_pictures_draw_one_interval_per_gate_window():
    view = release_view(run(
        {"resolve_rollout": "success", "step_1_gate": "success", "step_2_gate": "success"},
        {"step_1_gate": gate_event(8), "step_2_gate": gate_event(9)}, state="running"))
    pictures = cs_panels(view.gates)
    assert len(pictures) == 2  # error rate and latency (no shadow rows)
    error_picture = pictures[0]
    assert error_picture.startswith("<svg") and error_picture.count("stroke-linecap") == 2
    assert "step 1 (5 %)" in error_picture and "margin +0.50 pp" in error_picture
