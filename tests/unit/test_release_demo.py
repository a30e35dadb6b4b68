"""The pure parts of `flightdeck release-demo` (the demo itself drives a real Airflow and
gateway; `make demo` runs it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from flightdeck.delivery.plan import RolloutPlan
from flightdeck.devtools import load
from flightdeck.devtools import release_demo as demo
from tests.support.poll import eventually


def test_the_promotion_conf_is_a_valid_canary_plan_with_short_steps():
    plan = RolloutPlan.parse({**demo.promotion_conf(), "strategy": "canary", "model_name": "m"})
    assert plan.model_ref == "challenger" and plan.require_approval
    assert plan.step_percents == [10.0, 50.0]
    assert plan.bake_seconds <= 15 and plan.post_promotion_bake_seconds <= 30
    assert plan.gates.min_requests < 200 and plan.drill_faults is None


def test_the_drill_conf_is_a_valid_canary_plan_that_injects_errors_into_an_old_version():
    aliases = {"champion": "2", "previous": "1", "challenger": "2"}
    conf = demo.broken_conf(aliases)
    plan = RolloutPlan.parse({**conf, "strategy": "canary", "model_name": "m"})
    assert plan.model_ref == "previous" and plan.require_approval
    assert plan.drill_faults == {"error_rate": 0.05}
    assert "drill_faults" not in demo.promotion_conf()  # the drill does not leak into run 1's conf


@pytest.mark.parametrize("aliases, expected", [
    ({"champion": "2", "previous": "1", "challenger": "2"}, "previous"),
    ({"champion": "2", "challenger": "3"}, "challenger"),
    ({"champion": "2", "previous": "2", "challenger": "1"}, "challenger"),
])
def test_the_broken_candidate_is_never_the_champion(aliases, expected):
    assert demo.broken_candidate(aliases) == expected


def test_no_broken_candidate_without_a_second_version():
    with pytest.raises(demo.ReleaseDemoError, match="make demo"):
        demo.broken_candidate({"champion": "1", "challenger": "1"})


def test_candidate_choice():
    assert demo.challenger_to_promote({"champion": "1", "challenger": "2"}) == "2"
    assert demo.challenger_to_promote({"champion": "1", "challenger": "1"}) is None
    assert demo.challenger_to_promote({"champion": "1"}) is None
    assert demo.fallback_candidate({"champion": "2", "previous": "1"}, ["1", "2", "3"]) == "1"
    assert demo.fallback_candidate({"champion": "2"}, ["1", "2", "10", "9"]) == "10"
    assert demo.fallback_candidate({"champion": "1"}, ["1"]) is None


def test_progress_prints_one_line_per_state_change_and_skips_queueing():
    before = {"resolve_rollout": "running", "preflight": None}
    after = {"resolve_rollout": "success", "preflight": "queued", "backtest": None, "approve": "awaiting_input"}
    lines = demo.progress_lines(before, after, 12.34, {"resolve_rollout": "candidate v2 over champion v1"})
    assert lines == ["    12.3 s  resolve_rollout        success  — candidate v2 over champion v1",
                     "    12.3 s  approve                awaiting_input"]
    assert demo.progress_lines(after, after, 20.0) == []


def test_tasks_cut_off_in_the_same_look_share_a_line():
    before = {"step_2_gate": "running", "step_3_weight": None, "step_3_gate": None, "skip_approval": None}
    after = {"step_2_gate": "failed", "step_3_weight": "upstream_failed", "step_3_gate": "upstream_failed",
             "skip_approval": "skipped"}
    assert demo.progress_lines(before, after, 5.0) == [
        "     5.0 s  step_2_gate            failed",
        "     5.0 s  2 tasks                upstream_failed  (step_3_weight, step_3_gate)",
        "     5.0 s  skip_approval          skipped"]


def test_describe_result_of_the_tasks_the_demo_annotates():
    gate = {"decision": "pass", "elapsed_s": 11.1, "reason": "every check passed"}
    assert demo.describe_result("step_1_gate", gate) == "pass after 11.1 s: every check passed"
    assert demo.describe_result("step_4_gate", {"decision": "not_in_plan"}) == "not in this plan"
    assert demo.describe_result("step_3_weight", {"in_plan": False}) == "not in this plan"
    weight = {"in_plan": True, "state": {"candidate_percent": 10.0, "revision": 3}}
    assert demo.describe_result("step_1_weight", weight) == "candidate at 10 % (route table v3)"
    assert demo.describe_result("resolve_rollout", {"candidate_version": "2", "baseline_version": "1"}) == \
        "candidate v2 over champion v1"
    assert demo.describe_result("rollback", {"rolled_back": False}) == "nothing to roll back"
    assert demo.describe_result("summarise_gates", {"markdown": "…"}) is None
    assert demo.describe_result("step_1_gate", None) is None


def test_the_failure_reason_is_the_exception_the_task_raised():
    events = [{"event": "::group::Pre Execute"},
              {"event": "gate decision: fail — error_rate failed: …\n| check | …"},
              {"event": "Task failed with exception", "level": "error",
               "error_detail": [{"exc_type": "AirflowFailException",
                                 "exc_value": "metric gate fail: error_rate failed: 5.1 % vs 0.0 %"}]}]
    assert demo.failure_reason(events) == "metric gate fail: error_rate failed: 5.1 % vs 0.0 %"
    assert demo.failure_reason(events[:2]).startswith("gate decision: fail — error_rate failed")
    assert demo.failure_reason(["plain text line"]) is None


def test_each_request_of_the_load_is_distinct_and_barely_changed():
    row = {load.NUDGED_FEATURE: 52_000, "region": "north"}
    copies = [load.nudged(row, i) for i in range(1000)]
    assert len({c[load.NUDGED_FEATURE] for c in copies}) == 1000
    assert all(0 <= c[load.NUDGED_FEATURE] - 52_000 < 1.0 and c["region"] == "north" for c in copies)
    assert row[load.NUDGED_FEATURE] == 52_000  # the source row is left alone


def test_the_production_defaults_the_output_names_are_the_plan_defaults():
    plan = RolloutPlan.parse({"strategy": "canary", "model_name": "m"})
    assert plan.steps == [5.0, 25.0, 50.0] and plan.bake_seconds == 300
    assert "5 -> 25 -> 50 %" in demo.PRODUCTION_NOTE and "300 s" in demo.PRODUCTION_NOTE


def test_free_port_keeps_a_free_preferred_port_and_avoids_a_busy_one():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        assert demo.free_port("127.0.0.1", taken) != taken
    port = demo.free_port("127.0.0.1")
    assert demo.free_port("127.0.0.1", port) == port


def test_stop_group_ends_the_child_and_its_children(tmp_path):
    # A shell that ignores SIGTERM, with a child: both must be gone after stop_group.
    script = "trap '' TERM; sleep 300 & echo $! > child.pid; wait"
    process = demo.start_group(["bash", "-c", script], dict(os.environ), tmp_path / "log.txt", cwd=tmp_path)
    eventually(lambda: (tmp_path / "child.pid").exists(), 10, 0.05, what="the child's pid file")
    child = int((tmp_path / "child.pid").read_text())
    demo.stop_group(process, "test", timeout=1)
    assert process.returncode == -signal.SIGKILL

    def child_gone() -> bool:
        status = subprocess.run(["ps", "-o", "stat=", "-p", str(child)], capture_output=True, text=True).stdout
        return status.strip() in ("", "Z")

    eventually(child_gone, 10, 0.02, what=f"the child {child} to be killed")


def test_the_module_does_not_import_airflow():
    code = "import sys, flightdeck.devtools.release_demo; sys.exit('airflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_cli_has_the_command():
    from flightdeck.cli import build_parser

    args = build_parser().parse_args(["release-demo", "--rate", "50"])
    assert args.rate == 50.0 and args.func.__name__ == "_release_demo"


def test_the_demo_runs_under_the_shipped_policy_with_only_fault_drills_allowed(tmp_path, monkeypatch):
    from flightdeck.config import get_settings
    from flightdeck.delivery.policy import DEFAULT_POLICY_FILE, PolicyFloorError, load_policy

    monkeypatch.setenv("FLIGHTDECK_RELEASE_POLICY_FILE", str(DEFAULT_POLICY_FILE))
    get_settings.cache_clear()
    try:
        shipped = load_policy()
        written = load_policy(demo._write_demo_policy(tmp_path))
    finally:
        get_settings.cache_clear()
    assert written.allow_drill_faults and not shipped.allow_drill_faults
    assert written.model_dump(exclude={"allow_drill_faults"}) == shipped.model_dump(exclude={"allow_drill_faults"})
    broken = {**demo.broken_conf({"champion": "2", "previous": "1"}), "strategy": "canary", "model_name": "m"}
    assert RolloutPlan.parse(broken, written).drill_faults
    assert RolloutPlan.parse({**demo.promotion_conf(), "strategy": "canary", "model_name": "m"}, shipped)
    with pytest.raises(PolicyFloorError, match="drill_faults"):
        RolloutPlan.parse(broken, shipped)
