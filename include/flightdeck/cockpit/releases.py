"""Releases: each promotion run with its steps, gate reports, outcome and pending approval.

A run arrives as a plain dictionary (the Airflow adapter reads it from Airflow's metadata):

    {"dag_id", "run_id", "state", "start_date", "end_date",
     "tasks": {task_id: {"state", "start_date", "end_date"}},
     "xcom": {task_id: return value},          # resolve_rollout, step_N_weight/gate, promote, ...
     "failure_logs": {task_id: log text},      # failed gates: their report is only in the log
     "approval": {"pending", "chosen_options", "responded_by", "responded_at"} or None}

A passed gate's report is its return value (the trigger's last look); a failed gate raised,
so its report is read back from the log line the sensor wrote ("gate decision: …" and the
markdown table). Nothing here talks to Airflow or changes anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote

from flightdeck.delivery.gates import CheckResult, GateReport

PROMOTION_DAGS = ("promote_canary", "promote_blue_green")
GATE_TASK = re.compile(r"^step_(\d+)_gate$")
FINAL_GATE = "post_promotion_gate"


@dataclass(frozen=True)
class CheckRow:
    """One check of a gate report, as the page shows it (numbers already in display units)."""

    name: str
    status: str
    unit: str
    baseline: float | None
    canary: float | None
    estimate: float | None
    lower: float | None
    upper: float | None
    threshold: float
    n_baseline: int
    n_canary: int
    message: str = ""


@dataclass(frozen=True)
class GateView:
    task_id: str
    label: str  # "step 1 (5 %)", "post-promotion bake"
    state: str | None
    decision: str | None  # pass / fail / inconclusive / error / not_in_plan / None (not decided yet)
    reason: str | None
    elapsed_s: float | None
    ended_at: str | None
    checks: list[CheckRow] = field(default_factory=list)
    alpha: float | None = None
    from_log: bool = False


@dataclass(frozen=True)
class StepView:
    task_id: str
    state: str | None
    started_at: str | None
    ended_at: str | None


@dataclass(frozen=True)
class ReleaseView:
    dag_id: str
    run_id: str
    run_state: str | None
    started_at: str | None
    ended_at: str | None
    model: str | None
    baseline: str | None
    candidate: str | None
    strategy: str | None
    endpoint: str | None
    target: str | None
    outcome: str  # promoted / rolled back / awaiting approval / running / failed
    why: str
    steps: list[StepView]
    gates: list[GateView]
    approval_pending: bool
    approval: dict | None
    required_actions_path: str


def _checks(report: dict | None) -> tuple[list[CheckRow], float | None]:
    if not report:
        return [], None
    parsed = GateReport.from_dict(report)
    return [_row(c) for c in parsed.checks], parsed.alpha


def _row(c: CheckResult) -> CheckRow:
    return CheckRow(name=c.name, status=c.status, unit=c.unit, baseline=c.baseline, canary=c.canary,
                    estimate=c.estimate, lower=c.lower, upper=c.upper, threshold=c.threshold,
                    n_baseline=c.n_baseline, n_canary=c.n_canary, message=c.message)


_NUMBER = r"[-+]?\d[\d,]*(?:\.\d+)?"


def _value(text: str) -> float | None:
    """A cell of the markdown table back to the report's units ("1.20 %" → 0.012, "+3.1 ms" → 3.1)."""
    match = re.search(_NUMBER, text)
    if not match:
        return None
    number = float(match.group().replace(",", ""))
    return number / 100 if ("%" in text or " pp" in text) else number


def checks_from_log(text: str) -> tuple[str | None, str | None, list[CheckRow]]:
    """(decision, reason, checks) from a gate task's log: the sensor logs "gate decision: D — R"
    followed by the report's markdown table. The last decision in the log wins."""
    decision = reason = None
    rows: list[CheckRow] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        found = re.search(r"gate decision: (\w+) — (.*)$", line)
        if not found:
            continue
        decision, reason, rows = found.group(1), found.group(2).strip(), []
        for row in lines[i + 1:]:
            if "|" not in row:
                if rows:
                    break
                continue
            cells = [c.strip() for c in row.strip().strip("|").split("|")]
            if len(cells) != 8 or cells[0] in ("check", "---") or set(cells[0]) <= {"-"}:
                continue
            name, status = cells[0], cells[1].strip("*")
            interval = re.findall(r"[-+]?\d[\d,]*(?:\.\d+)?\s*(?:%|pp|ms)?", cells[5]) if cells[5] != "–" else []
            n = re.findall(r"\d[\d,]*", cells[7])
            unit = "rate" if "%" in cells[2] or "%" in cells[3] else "ms" if "ms" in cells[2] + cells[3] else "psi"
            rows.append(CheckRow(
                name=name, status=status, unit=unit, baseline=_value(cells[2]), canary=_value(cells[3]),
                estimate=_value(cells[4]),
                lower=_value(interval[0]) if len(interval) == 2 else None,
                upper=_value(interval[1]) if len(interval) == 2 else None,
                threshold=_value(cells[6]) or 0.0,
                n_baseline=int(n[0].replace(",", "")) if n else 0,
                n_canary=int(n[1].replace(",", "")) if len(n) > 1 else 0))
    return decision, reason, rows


def _gate(task_id: str, label: str, run: dict) -> GateView:
    task = run.get("tasks", {}).get(task_id, {})
    event = run.get("xcom", {}).get(task_id)
    log_text = run.get("failure_logs", {}).get(task_id)
    if isinstance(event, dict) and event.get("decision"):
        checks, alpha = _checks(event.get("report"))
        return GateView(task_id, label, task.get("state"), event["decision"], event.get("reason"),
                        event.get("elapsed_s"), task.get("end_date"), checks, alpha)
    if log_text:
        decision, reason, checks = checks_from_log(log_text)
        return GateView(task_id, label, task.get("state"), decision, reason, None, task.get("end_date"), checks,
                        None, from_log=True)
    return GateView(task_id, label, task.get("state"), None, None, None, task.get("end_date"))


def _outcome(run: dict, gates: list[GateView], approval_pending: bool) -> tuple[str, str]:
    tasks = run.get("tasks", {})
    xcom = run.get("xcom", {})

    def state(task_id: str) -> str | None:
        return tasks.get(task_id, {}).get("state")

    if state("finish") == "success":
        return "promoted", (xcom.get("finish") or {}).get("detail") or "every gate passed"
    rolled = xcom.get("rollback") or {}
    failed = [t for t, info in tasks.items() if info.get("state") in ("failed", "upstream_failed")
              and t != "rollback"]
    first_failed = [t for t in failed if tasks[t].get("state") == "failed"]
    failed_gate = next((g for g in gates if g.task_id in first_failed), None)
    if failed_gate is not None:
        why = f"{failed_gate.label}: {failed_gate.decision or 'failed'}"
        why += f" — {failed_gate.reason}" if failed_gate.reason else ""
    elif "approve" in first_failed:
        approval = run.get("approval") or {}
        chosen = ", ".join(approval.get("chosen_options") or []) or "no answer in time"
        why = f"approval: {chosen}"
    elif first_failed:
        why = f"{', '.join(sorted(first_failed))} failed (its log says why)"
    else:
        why = ""
    if state("rollback") == "success" and rolled.get("rolled_back", True):
        left = "; ".join(rolled.get("left_alone") or [])
        return "rolled back", why + (f" (left alone: {left})" if left else "")
    if approval_pending:
        return "awaiting approval", "every gate so far passed; a human decides in Required Actions"
    if run.get("state") in ("running", "queued"):
        return "running", why
    if run.get("state") == "failed":
        return "failed", why or "the run failed"
    return str(run.get("state") or "unknown"), why


def release_view(run: dict) -> ReleaseView:
    """One promotion run as the Releases page shows it."""
    xcom = run.get("xcom", {})
    rollout = xcom.get("resolve_rollout") or {}
    plan = rollout.get("plan") or {}
    strategy = plan.get("strategy") or ("blue_green" if run["dag_id"] == "promote_blue_green" else "canary")
    percents = list(plan.get("steps") or []) if strategy == "canary" else [0.0]
    tasks = run.get("tasks", {})
    gates = []
    for task_id in sorted((t for t in tasks if GATE_TASK.match(t)), key=lambda t: int(GATE_TASK.match(t).group(1))):
        step = int(GATE_TASK.match(task_id).group(1))
        if percents and step > len(percents):
            continue  # a slot the plan does not use
        if strategy == "canary":
            label = f"step {step} ({percents[step - 1]:g} %)" if percents else f"step {step}"
        else:
            label = "shadow (idle colour)"
        gates.append(_gate(task_id, label, run))
    if FINAL_GATE in tasks:
        gates.append(_gate(FINAL_GATE, "post-promotion bake", run))
    gates = [g for g in gates if g.decision != "not_in_plan"]
    steps = [StepView(t, info.get("state"), info.get("start_date"), info.get("end_date"))
             for t, info in sorted(tasks.items(), key=lambda kv: (kv[1].get("start_date") or "~", kv[0]))]
    approval = run.get("approval")
    pending = bool(approval and approval.get("pending")) or tasks.get("approve", {}).get("state") in (
        "deferred", "awaiting_input")
    outcome, why = _outcome(run, gates, pending)
    return ReleaseView(
        dag_id=run["dag_id"], run_id=run["run_id"], run_state=run.get("state"), started_at=run.get("start_date"),
        ended_at=run.get("end_date"), model=plan.get("model_name"), baseline=rollout.get("baseline_version"),
        candidate=rollout.get("candidate_version"), strategy=strategy, endpoint=plan.get("endpoint"),
        target=plan.get("target"), outcome=outcome, why=why, steps=steps, gates=gates, approval_pending=pending,
        approval=approval,
        required_actions_path=f"dags/{run['dag_id']}/runs/{quote(run['run_id'], safe='')}/required_actions")
