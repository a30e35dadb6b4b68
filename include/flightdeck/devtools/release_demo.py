"""`flightdeck release-demo`: the end of `make demo`. A canary promotion of a second model
version through every step of `promote_canary`, against the local gateway under generated
load, approved through Airflow's REST API as an approver would; then a deliberately broken
challenger that the metric gates roll back on their own.

Airflow is driven from the outside, as a user drives it: `airflow standalone` as a child
process group, the CLI for `dags reserialize`, the REST API for everything else. This module
never imports Airflow. Every process it starts (gateway, Airflow, the load) is stopped on the
way out, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from flightdeck.config import Settings
from flightdeck.devtools.airflow_api import AirflowApiError, AirflowRest
from flightdeck.devtools.gateway_demo import redacted, wait_ready
from flightdeck.devtools.launch import free_port, standalone_env, stop_process_group
from flightdeck.devtools.load import Load
from flightdeck.errors import FlightdeckError

DAG_ID = "promote_canary"
ENDPOINT = "default"
# The demo's second model version: trained on a later window of the data `make demo`
# generates (2026-01-01..2026-03-31; the champion saw 2026-01-01..2026-02-28).
RETRAIN_WINDOW = ("2026-01-15", "2026-03-15")
LABELS_AS_OF = "2026-03-31"
# Traffic comes from days neither model trained on and before the demo's feature drift.
TRAFFIC_DAYS = ("2026-03-16", "2026-03-28")
LABELLED_REQUESTS = 600
LOAD_RATE = 200.0  # single-row requests per second, for the whole demo

# Short steps so the demo fits in minutes; the statistics are those of production. The
# post-promotion bake is longer than the steps' because its window opens when `promote`
# switches traffic, before its sensor even starts: a trigger that fires within a second or
# two of deferring can be failed by a scheduler race (a stale executor event; retried, at a
# cost of a minute).
DEMO_PLAN = {
    "steps": [10, 50], "bake_seconds": 10, "max_step_seconds": 120, "look_seconds": 2,
    "post_promotion_bake_seconds": 20, "require_approval": True, "approval_timeout_minutes": 10,
    "gates": {"min_requests": 100, "min_requests_hard_fail": 30, "min_rows_for_distribution": 200},
    "backtest": {"min_labelled_rows": 200, "auc_margin": 0.05, "logloss_margin": 1.0},
}
PRODUCTION_NOTE = ("demo settings: steps 10 -> 50 %, 10 s bake per step, 20 s after promotion, gate looks "
                   "every 2 s, gates need 100 requests per variant (30 to fail). Production defaults: "
                   "5 -> 25 -> 50 %, 300 s bakes, looks every 15 s, 200 requests (50 to fail), "
                   "backtest margins 0.01 AUC / 0.02 log loss.")
BROKEN_FAULTS = {"error_rate": 0.05}

FINISHED = {"success", "failed"}
QUIET_STATES = {None, "scheduled", "queued", "none"}
GROUPED_STATES = ("upstream_failed", "skipped")
ANNOTATED = ("resolve_rollout", "backtest", "deploy", "promote", "rollback")
RUN_TIMEOUT_SECONDS = 600
STOP_TIMEOUT_SECONDS = 30
RUN_NOTE = "flightdeck release-demo"  # marks the demo's runs (an interrupted demo's are failed on the next start)


class ReleaseDemoError(FlightdeckError):
    """The demo could not show what it promises (a promotion, then an automatic rollback)."""


def say(*parts: object) -> None:
    print(*parts, flush=True)  # progress must show as it happens, also through a pipe (make)


# ---- pure parts (unit-tested) ---------------------------------------------------------------
def promotion_conf(candidate: str = "challenger") -> dict:
    """Run conf of the promotion: the demo plan with the candidate as `model_ref` (a version or an alias)."""
    return {**DEMO_PLAN, "model_ref": candidate}


def broken_candidate(aliases: dict[str, str]) -> str:
    """The alias of a version that is not the champion, for the drill: `previous` (the old
    champion, which the first run has just replaced) or else `challenger`."""
    champion = aliases.get("champion")
    for alias in ("previous", "challenger"):
        if aliases.get(alias) not in (None, champion):
            return alias
    raise ReleaseDemoError(f"no version besides the champion (aliases {aliases}) to drill a rollback with. "
                           "Fix: run the demo from the start (`make demo`), which registers a second version.")


def broken_conf(aliases: dict[str, str]) -> dict:
    """Run conf of the drill: an old version, with a share of its calls failing on purpose."""
    return {**promotion_conf(broken_candidate(aliases)), "drill_faults": dict(BROKEN_FAULTS)}


def challenger_to_promote(aliases: dict[str, str]) -> str | None:
    """The challenger's version when it differs from the champion, else None."""
    challenger = aliases.get("challenger")
    return challenger if challenger is not None and challenger != aliases.get("champion") else None


def fallback_candidate(aliases: dict[str, str], versions: list[str]) -> str | None:
    """A registered version other than the champion: `previous` first, else the newest."""
    champion = aliases.get("champion")
    if aliases.get("previous") not in (None, champion):
        return aliases["previous"]
    others = sorted((v for v in versions if v != champion), key=int)
    return others[-1] if others else None


def progress_lines(before: dict[str, str | None], after: dict[str, str | None], elapsed: float,
                   notes: dict[str, str] | None = None) -> list[str]:
    """One line per task whose state changed (queueing states left out), in `after`'s order;
    tasks skipped or cut off by an upstream failure in the same look share one line."""
    notes = notes or {}
    lines, grouped = [], {}
    for task_id, state in after.items():
        if state == before.get(task_id) or state in QUIET_STATES:
            continue
        if state in GROUPED_STATES:
            grouped.setdefault(state, []).append(task_id)
            continue
        note = notes.get(task_id)
        lines.append(f"  {elapsed:6.1f} s  {task_id:<22} {state}" + (f"  — {note}" if note else ""))
    for state, task_ids in grouped.items():
        name = task_ids[0] if len(task_ids) == 1 else f"{len(task_ids)} tasks"
        detail = "" if len(task_ids) == 1 else f"  ({', '.join(task_ids)})"
        lines.append(f"  {elapsed:6.1f} s  {name:<22} {state}{detail}")
    return lines


def describe_result(task_id: str, value: dict | None) -> str | None:
    """A short note on what a finished task returned (its XCom), for the progress line."""
    if not isinstance(value, dict):
        return None
    if task_id.endswith("_gate"):
        if value.get("decision") == "not_in_plan":
            return "not in this plan"
        return f"{value.get('decision')} after {value.get('elapsed_s')} s: {value.get('reason')}"
    if task_id.endswith("_weight"):
        if not value.get("in_plan", True):
            return "not in this plan"
        return f"candidate at {value['state']['candidate_percent']:g} % (route table v{value['state']['revision']})"
    if task_id == "resolve_rollout":
        return f"candidate v{value['candidate_version']} over champion v{value['baseline_version']}"
    if task_id == "backtest":
        return f"{value.get('verdict')}: {'; '.join(value.get('reasons') or [])}"
    if task_id == "deploy":
        return f"candidate deployed at 0 % (route table v{value['state']['revision']})"
    if task_id == "promote":
        return f"100 % on the candidate; aliases {value.get('aliases')}"
    if task_id == "rollback":
        return f"aliases {value.get('aliases')}" if value.get("rolled_back") else "nothing to roll back"
    return None


def failure_reason(events: list) -> str | None:
    """Why a task failed, from its log entries (the REST API's structured log): the exception the
    task raised (a failing gate raises "metric gate fail: <reason>" and its report), else the
    last gate decision logged."""
    for entry in events:
        for detail in (entry.get("error_detail") or []) if isinstance(entry, dict) else []:
            if detail.get("exc_value"):
                return str(detail["exc_value"])
    decisions = [text for text in (_event_text(e) for e in events) if "gate decision: " in text]
    return decisions[-1][decisions[-1].index("gate decision: "):] if decisions else None


def _event_text(entry) -> str:
    return str(entry.get("event", "")) if isinstance(entry, dict) else str(entry)


def indented(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


# ---- processes ------------------------------------------------------------------------------
def start_group(command: list[str], env: dict, log_path: Path, cwd: Path | None = None) -> subprocess.Popen:
    """A child process in its own process group (so its children stop with it), logging to a file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop_group(process: subprocess.Popen, name: str, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """Stop the process group `process` leads and say so."""
    say(f"{name} stopped (exit {stop_process_group(process, timeout)})")


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


# ---- the demo -------------------------------------------------------------------------------
def run(settings: Settings, rate: float = LOAD_RATE) -> None:
    """The whole demo. Raises ReleaseDemoError unless run 1 promoted and run 2 rolled back.

    Whatever happens (a failure, Ctrl-C, SIGTERM) the load, Airflow and the gateway are
    stopped before it returns; signals are ignored while they stop, so a second Ctrl-C cannot
    leave a process group behind.
    """
    previous = _signal_handlers()
    stack = contextlib.ExitStack()
    try:
        if previous:
            signal.signal(signal.SIGTERM, _interrupted)  # unwind like Ctrl-C
        _run(settings, rate, stack)
    finally:
        if previous:
            for signum in previous:
                signal.signal(signum, signal.SIG_IGN)
        try:
            stack.close()
        finally:
            for signum, handler in (previous or {}).items():
                signal.signal(signum, handler)


def _signal_handlers() -> dict | None:
    """SIGINT's and SIGTERM's handlers, when this thread may change them (the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}


def _interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _run(settings: Settings, rate: float, stack: contextlib.ExitStack) -> None:
    from flightdeck.registry import Registry
    from flightdeck.serving.client import GatewayClient

    started = time.monotonic()
    registry = Registry.from_settings(settings)
    model = settings.model_name
    work = settings.home / "release-demo"
    work.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)  # this run only; never written anywhere
    host = settings.gateway_host
    gateway_port = free_port(host, settings.gateway_port)
    gateway_url = f"http://{host}:{gateway_port}"
    airflow = _AirflowSetup.from_environment(settings, work, f"{host}:{gateway_port}", token)
    rows, labels = _traffic_rows(settings)

    say(f"starting: flightdeck serve on {gateway_url} ({settings.gateway_workers} workers, embedded "
        f"database {redacted(settings.gateway_db_url)}); log {work / 'gateway.log'}")
    gateway = start_group([_bin("flightdeck"), "serve", "--port", str(gateway_port), "--grpc-port", "0"],
                          {**os.environ, "FLIGHTDECK_ADMIN_TOKENS": json.dumps({"demo": token})},
                          work / "gateway.log")
    stack.callback(stop_group, gateway, "gateway")
    reserialize = airflow.prepare()
    stack.callback(lambda: reserialize.poll() is None and stop_group(reserialize, "airflow dags reserialize"))

    candidate = ensure_candidate(settings, registry)

    airflow.finish_prepare(reserialize)
    standalone = airflow.start()
    stack.callback(stop_group, standalone, "airflow standalone", 60)

    client = stack.enter_context(GatewayClient(gateway_url, token))
    try:
        wait_ready(client, gateway, work / "gateway.log")
    except RuntimeError as exc:
        raise ReleaseDemoError(str(exc)) from None
    _serve_champion_alone(client, registry, model, rows[0])
    _log_labelled_traffic(client, rows, labels)
    load = Load(gateway_url, rows, rate).start()
    stack.callback(lambda: say(f"load: {load.summary()}"))
    stack.callback(load.stop)
    say(f"load: ~{rate:g} single-row requests/s to {gateway_url}/invocations in the background")

    api = AirflowRest(airflow.url)
    stack.callback(api.close)
    if airflow.wait_healthy(api, standalone):
        _serve_champion_alone(client, registry, model, rows[0])  # undo what the stale run did
    say(f"Airflow UI: {airflow.url}/dags/{DAG_ID} (every user is admin in this demo; it listens on "
        "127.0.0.1 only)")
    say(f"setup took {time.monotonic() - started:.0f} s")

    # Run 1: the retrained version goes through every step, a human (we) approves.
    say("")
    say(f"== run 1: canary promotion of v{candidate} ({DAG_ID}) ==")
    say(PRODUCTION_NOTE)
    conf = promotion_conf("challenger")
    run_id = api.trigger(DAG_ID, conf, note=f"{RUN_NOTE}: promotion")
    say(f"triggered {run_id} with conf {json.dumps(conf)}")
    state, tasks = _follow(api, run_id, on_approval="Approve")
    aliases = registry.aliases(model)
    if state != "success" or aliases.get("champion") != candidate:
        raise ReleaseDemoError(f"run 1 did not promote v{candidate}: run {state}, aliases {aliases}, "
                               f"tasks {tasks}. See the task logs in the Airflow UI ({airflow.url}) and "
                               f"{airflow.log_path}.")
    final = api.xcom(DAG_ID, run_id, "post_promotion_gate") or {}
    say("")
    say(f"final gate report (post_promotion_gate: {final.get('decision')} — {final.get('reason')}):")
    say(indented(_report_markdown(final)))
    _show_serving(client, registry, model, "after run 1")

    # Run 2: an old version with injected errors; the gates must roll it back on their own.
    say("")
    conf2 = broken_conf(aliases)
    broken = aliases[conf2["model_ref"]]
    say(f"== run 2: a deliberately broken challenger: v{broken} (alias {conf2['model_ref']}) with "
        f"{BROKEN_FAULTS['error_rate']:.0%} of its calls failing (drill_faults); approval required ==")
    run_id2 = api.trigger(DAG_ID, conf2, note=f"{RUN_NOTE}: broken challenger")
    say(f"triggered {run_id2} with conf {json.dumps(conf2)}")
    state2, tasks2 = _follow(api, run_id2, on_approval="Reject")
    _show_failure(api, run_id2)
    aliases2 = registry.aliases(model)
    served = _show_serving(client, registry, model, "after run 2")
    rolled_back = (state2 == "failed" and tasks2.get("rollback") == "success"
                   and tasks2.get("approve") not in ("success", "failed") and aliases2 == aliases
                   and served == aliases["champion"])
    if not rolled_back:
        raise ReleaseDemoError(f"run 2 did not roll back automatically before the approval: run {state2}, "
                               f"tasks {tasks2}, aliases {aliases2} (expected {aliases}), serving v{served}.")
    say(f"rolled back automatically: champion v{aliases2['champion']} serves all traffic again, "
        f"aliases {aliases2}")
    say(f"release demo finished in {time.monotonic() - started:.0f} s; stopping the load, Airflow and "
        "the gateway")


def _traffic_rows(settings: Settings) -> tuple[list[dict], list[float]]:
    """Complete rows (features and label) of days neither model trained on."""
    from flightdeck.data.partitions import list_partitions, read_window
    from flightdeck.data.schema import FEATURES, LABEL

    days = [str(d) for d in list_partitions(settings.raw_dir)]
    chosen = [d for d in days if TRAFFIC_DAYS[0] <= d <= TRAFFIC_DAYS[1]] or days[-7:]
    if not chosen:
        raise ReleaseDemoError(f"no raw partitions under {settings.raw_dir}. Fix: run `make demo` (or "
                               "`flightdeck generate-data`) first.")
    frame = read_window(settings.raw_dir, chosen[0], chosen[-1])[[*FEATURES, LABEL]].dropna()
    frame = frame.sample(frac=1.0, random_state=settings.seed).head(5000)
    return frame[list(FEATURES)].to_dict(orient="records"), [float(x) for x in frame[LABEL]]


def ensure_candidate(settings: Settings, registry) -> str:
    """A registered version other than the champion, aliased `challenger`; returns its version.

    train_register registers a new version only when it beats the champion by the margin. To
    have something to promote, the demo retrains on a later window and registers the result
    whatever the evaluation says.
    """
    model = settings.model_name
    aliases = registry.aliases(model)
    if "champion" not in aliases:
        raise ReleaseDemoError(f"model {model!r} has no champion. Fix: run train_register first (`make demo` "
                               "does).")
    existing = challenger_to_promote(aliases)
    if existing:
        say(f"challenger v{existing} (champion v{aliases['champion']}) will be promoted")
        return existing
    version = _retrain(settings, registry)
    if version == aliases["champion"]:
        versions = [str(v.version) for v in registry.client.search_model_versions(f"name = '{model}'")]
        version = fallback_candidate(aliases, versions)
        if version is None:
            raise ReleaseDemoError(f"the retrained model is the champion v{aliases['champion']} and no other "
                                   "version exists to promote")
        say(f"that version is already the champion (an earlier demo promoted it); the demo promotes v{version} "
            "instead")
    registry.client.set_registered_model_alias(model, "challenger", version)
    say(f"challenger -> v{version}; champion is v{aliases['champion']}")
    return version


def _retrain(settings: Settings, registry) -> str:
    from flightdeck.training.params import TrainParams

    params = TrainParams.parse({"window_start": RETRAIN_WINDOW[0], "window_end": RETRAIN_WINDOW[1],
                                "labels_as_of": LABELS_AS_OF, "model_name": settings.model_name})
    say(f"no challenger besides the champion: training one on {RETRAIN_WINDOW[0]}..{RETRAIN_WINDOW[1]} "
        f"(labels as of {LABELS_AS_OF}) with the train_register stages")
    with _quiet("mlflow"):  # its warnings about the ONNX input example are for train_register's log
        return _train_and_register(registry, params)


@contextlib.contextmanager
def _quiet(logger_name: str):
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _train_and_register(registry, params) -> str:
    from flightdeck.training import pipeline

    validation = pipeline.validate_window(params)
    known = registry.version_for_key(params.model_name, validation["training_key"])
    if known is not None:
        say(f"v{known.version} was already trained from the same data and parameters: reusing it")
        return str(known.version)
    staging = pipeline.staging_dir("release-demo")
    pipeline.train(params, staging)
    evaluation = pipeline.evaluate(params, staging, registry)
    mlflow_run = pipeline.log_run(params, validation, evaluation, registry, airflow_run_id="release-demo")
    exported = pipeline.export_onnx(params, staging, registry, mlflow_run)
    decision = evaluation["decision"]
    say(f"evaluation: {decision['reason']}")
    if not decision["register"]:
        say("train_register would not register it (it does not beat the champion by the margin); the demo "
            "registers it anyway, to have a second version to promote. The canary's gates judge it on live "
            "traffic.")
    registration = pipeline.register(params, registry, mlflow_run, exported["model_uri"],
                                     validation["training_key"],
                                     f"release demo: {decision['reason']}")
    say(f"registered v{registration['version']} (MLflow run {mlflow_run})")
    return str(registration["version"])


def _serve_champion_alone(client, registry, model: str, row: dict) -> None:
    """Start from the champion alone on the demo's endpoint (an interrupted demo may have left a canary)."""
    champion = registry.aliases(model)["champion"]

    def champion_alone(spec: dict | None) -> dict | None:
        spec = spec or {}
        variants = list(spec.get("variants", {}).values())
        plain = (spec.get("policy") == "single" and len(variants) == 1 and not spec.get("shadow")
                 and not spec.get("fallback") and not variants[0].get("faults")
                 and (variants[0].get("version") == champion or variants[0].get("alias") == "champion"))
        return None if plain else {"policy": "single", "variants": {"stable": {"model": model, "version": champion}}}

    update = client.update_endpoint(ENDPOINT, champion_alone, comment="release demo: start from the champion alone",
                                    create=True)
    if update.written:
        say(f"endpoint {ENDPOINT!r} reset to the champion v{champion} alone (route table v{update.version})")
    _wait_serving(client, champion, row)


def _wait_serving(client, version: str, row: dict, timeout: float = 60) -> None:
    """Until the gateway's workers answer with `version` (each loads a new table within a poll)."""
    from flightdeck.serving.client import GatewayError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(GatewayError, httpx.HTTPError):
            if all(client.invocations([row], endpoint=ENDPOINT)["model_version"] == version for _ in range(6)):
                return
        time.sleep(0.5)
    raise ReleaseDemoError(f"the gateway does not serve v{version} on {ENDPOINT!r} after {timeout:.0f} s")


def _live_version(client) -> str | None:
    """The version the demo's endpoint serves alone (None while it splits traffic)."""
    spec = client.routes()["document"]["endpoints"].get(ENDPOINT) or {}
    if spec.get("policy") != "single":
        return None
    shadow = (spec.get("shadow") or {}).get("variant")
    live = [v for name, v in spec.get("variants", {}).items() if name != shadow]
    return live[0].get("version") if live else None


def _log_labelled_traffic(client, rows: list[dict], labels: list[float]) -> None:
    """Score labelled rows through the gateway and record their outcomes: the backtest replays them."""
    outcomes = []
    for record, label in zip(rows[:LABELLED_REQUESTS], labels[:LABELLED_REQUESTS], strict=True):
        answer = client.invocations([record], endpoint=ENDPOINT)
        outcomes.append({"request_id": answer["request_id"], "label": label})
    recorded = client.record_outcomes(outcomes)
    say(f"labelled traffic: {len(outcomes)} requests scored by v{answer['model_version']}, {recorded} outcomes "
        "recorded (the backtest replays them)")


def _follow(api: AirflowRest, run_id: str, on_approval: str) -> tuple[str, dict[str, str | None]]:
    """Print each task's state changes until the run ends; answer its approval with `on_approval`."""
    started = time.monotonic()
    seen: dict[str, str | None] = {}
    answered = False
    while time.monotonic() - started < RUN_TIMEOUT_SECONDS:
        instances = [ti for ti in api.task_instances(DAG_ID, run_id) if ti.get("map_index", -1) == -1]
        now = {ti["task_id"]: ti["state"] for ti in sorted(instances, key=_start_order)}
        notes = {task_id: describe_result(task_id, api.xcom(DAG_ID, run_id, task_id))
                 for task_id, state in now.items()
                 if state == "success" and seen.get(task_id) != state
                 and (task_id in ANNOTATED or task_id.endswith(("_gate", "_weight")))}
        for line in progress_lines(seen, now, time.monotonic() - started, notes):
            say(line)
        seen = now
        if now.get("approve") == "awaiting_input" and not answered:
            request = api.pending_approval(DAG_ID, run_id)
            if request is not None:
                _answer(api, run_id, request, on_approval, parked_since=datetime.now(UTC))
                answered = True
        state = api.run_state(DAG_ID, run_id)
        if state in FINISHED:
            say(f"  {time.monotonic() - started:6.1f} s  run {state}")
            return state, now
        time.sleep(1)
    raise ReleaseDemoError(f"{DAG_ID} run {run_id} still running after {RUN_TIMEOUT_SECONDS} s")


def _start_order(ti: dict) -> tuple:
    return (ti.get("start_date") is None, ti.get("start_date") or "", ti["task_id"])


def _answer(api: AirflowRest, run_id: str, request: dict, option: str, parked_since: datetime) -> None:
    say("")
    say(f"approval requested: {request.get('subject')}")
    say(indented(request.get("body") or ""))
    say("")
    if option == "Approve":
        say(f"approving as the approver would: PATCH /api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/"
            'approve/-1/hitlDetails {"chosen_options": ["Approve"]}')
    else:
        say("this run should have been rolled back before asking anyone: rejecting it")
    api.respond(DAG_ID, run_id, option, parked_since=parked_since)


def _report_markdown(event: dict) -> str:
    from flightdeck.delivery.gates import GateReport

    if not event.get("report"):
        return "(no report)"
    return GateReport.from_dict(event["report"]).to_markdown()


def _show_failure(api: AirflowRest, run_id: str) -> None:
    """Which task failed and why (the gate's decision from its log), and what the rollback did."""
    failed = [ti for ti in api.task_instances(DAG_ID, run_id) if ti["state"] == "failed"]
    for ti in failed:
        reason = failure_reason(api.log_events(DAG_ID, run_id, ti["task_id"], ti.get("try_number") or 1))
        say(f"{ti['task_id']} failed: {indented(reason or '(no reason in its log)', '  ').lstrip()}")
    undo = api.xcom(DAG_ID, run_id, "rollback") or {}
    if undo.get("rolled_back"):
        state = undo["state"]
        say(f"rollback: candidate at {state['candidate_percent']:g} %, route table v{state['revision']}, "
            f"aliases {undo['aliases']}, audit tag on v{undo['audit']['candidate']}: {undo['audit']['outcome']}")


def _show_serving(client, registry, model: str, when: str) -> str | None:
    aliases = registry.aliases(model)
    stored = client.routes()
    spec = stored["document"]["endpoints"].get(ENDPOINT)
    say(f"{when}: aliases {aliases}; route table v{stored['version']}: {ENDPOINT} = {json.dumps(spec)}")
    return _live_version(client)


def _write_demo_policy(work: Path) -> Path:
    """The configured release policy with fault drills allowed (the broken rollout is a drill),
    written beside the demo's other files for its Airflow to use; every other floor stays."""
    from flightdeck.delivery.policy import load_policy

    policy = load_policy().model_copy(update={"allow_drill_faults": True})
    path = work / "release_policy.yaml"
    path.write_text("# The demo's release policy: the configured one, with fault drills allowed.\n"
                    + json.dumps(policy.model_dump(mode="json"), indent=2) + "\n")
    return path


@dataclass
class _AirflowSetup:
    """How the demo runs `airflow standalone`: home, database, ports and environment."""

    home: Path
    port: int
    env: dict
    log_path: Path
    sqlite_path: Path | None
    paused_by_demo: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def from_environment(cls, settings: Settings, work: Path, gateway_hostport: str, token: str) -> _AirflowSetup:
        home = Path(os.environ.get("AIRFLOW_HOME") or settings.home / "airflow").resolve()
        dags = os.environ.get("AIRFLOW__CORE__DAGS_FOLDER")
        if not dags:
            # An editable install from this repository: its dags/ sits beside include/.
            repo_dags = Path(__file__).resolve().parents[3] / "dags"
            if not (repo_dags / f"{DAG_ID}.py").is_file():
                raise ReleaseDemoError("AIRFLOW__CORE__DAGS_FOLDER is not set. Fix: run the demo through "
                                       "`make demo`, or export it to the repository's dags/ folder.")
            dags = str(repo_dags)
        port = free_port("127.0.0.1", 8080)
        env = standalone_env(home, dags, port, settings.home,
                             AIRFLOW_CONN_FLIGHTDECK_GATEWAY=f"http://:{token}@{gateway_hostport}")
        env.pop("FLIGHTDECK_ADMIN_TOKENS", None)
        env["FLIGHTDECK_RELEASE_POLICY_FILE"] = str(_write_demo_policy(work))
        conn = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
        if conn.startswith("sqlite:///"):
            sqlite_path = Path(conn.removeprefix("sqlite:///").split("?")[0])
        elif conn:
            sqlite_path = None
        else:
            sqlite_path = home / "airflow.db"
        return cls(home, port, env, work / "airflow-standalone.log", sqlite_path)

    def _cli(self, *args: str) -> subprocess.Popen:
        return start_group([_bin("airflow"), *args], self.env, self.log_path.with_name("airflow-cli.log"),
                           cwd=self.home)

    def prepare(self) -> subprocess.Popen:
        """Migrate a missing SQLite database, then start `airflow dags reserialize` (in the background)."""
        self.home.mkdir(parents=True, exist_ok=True)
        if self.sqlite_path is not None and not self.sqlite_path.exists():
            say("migrating a new Airflow metadata database")
            self._wait(self._cli("db", "migrate"), "airflow db migrate", 600)
        say(f"airflow dags reserialize (AIRFLOW_HOME={self.home})")
        return self._cli("dags", "reserialize")

    def finish_prepare(self, reserialize: subprocess.Popen) -> None:
        self._wait(reserialize, "airflow dags reserialize", 300)
        if self.sqlite_path is None:
            return
        # Write-ahead logging: the API and the CLI read while the scheduler writes SQLite.
        with contextlib.closing(sqlite3.connect(self.sqlite_path, timeout=60)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            active = db.execute("SELECT count(*) FROM dag_run WHERE dag_id = ? AND state IN ('running', "
                                "'queued')", (DAG_ID,)).fetchone()[0]
        if active:
            # An interrupted run would carry on moving traffic as soon as the scheduler starts.
            say(f"{DAG_ID} has {active} unfinished run(s): pausing it until they are dealt with")
            self._wait(self._cli("dags", "pause", DAG_ID), "airflow dags pause", 300)
            self.paused_by_demo = True

    def _wait(self, process: subprocess.Popen, what: str, timeout: float) -> None:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(process, what)
            raise ReleaseDemoError(f"{what} did not finish in {timeout:.0f} s; see "
                                   f"{self.log_path.with_name('airflow-cli.log')}") from None
        except BaseException:  # interrupted: the command must not outlive the demo
            stop_group(process, what)
            raise
        if process.returncode != 0:
            raise ReleaseDemoError(f"{what} failed (exit {process.returncode}); see "
                                   f"{self.log_path.with_name('airflow-cli.log')}")

    def start(self) -> subprocess.Popen:
        say(f"starting: airflow standalone on {self.url} (scheduler, dag-processor, triggerer, api-server); "
            f"log {self.log_path}")
        return start_group([_bin("airflow"), "standalone"], self.env, self.log_path, cwd=self.home)

    def wait_healthy(self, api: AirflowRest, process: subprocess.Popen, timeout: float = 300) -> int:
        """Every component healthy, runs an interrupted demo left failed, then promote_canary
        unpaused (it was serialized before the start). Returns how many runs were failed."""
        deadline = time.monotonic() + timeout
        while not api.healthy():
            if process.poll() is not None:
                raise ReleaseDemoError(f"airflow standalone exited ({process.returncode}); see {self.log_path}")
            if time.monotonic() > deadline:
                raise ReleaseDemoError(f"Airflow not healthy after {timeout:.0f} s; see {self.log_path}")
            time.sleep(2)
        api.login()
        try:
            api.call("GET", f"/dags/{DAG_ID}")
        except AirflowApiError:
            errors = api.call("GET", "/importErrors").get("import_errors", [])
            detail = "; ".join(f"{e.get('filename')}: {e.get('stack_trace', '')[-300:]}" for e in errors)
            raise ReleaseDemoError(f"Airflow does not know the DAG {DAG_ID}. Import errors: {detail or 'none'}. "
                                   f"Fix: check AIRFLOW__CORE__DAGS_FOLDER ({self.env['AIRFLOW__CORE__DAGS_FOLDER']})."
                                   ) from None
        stale = api.active_runs(DAG_ID)
        foreign = [r["dag_run_id"] for r in stale if not (r.get("note") or "").startswith(RUN_NOTE)]
        if foreign:
            if self.paused_by_demo:  # not the demo's runs: leave the DAG as it was
                api.call("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
            raise ReleaseDemoError(f"{DAG_ID} has run(s) in progress that the demo did not start: {foreign} "
                                   "(one run at a time). Fix: let them finish, or mark them failed in the "
                                   f"Airflow UI ({self.url}), then run the demo again.")
        for dag_run in stale:
            api.call("PATCH", AirflowRest.run_path(DAG_ID, dag_run["dag_run_id"]), json={"state": "failed"})
            say(f"marked {dag_run['dag_run_id']} failed: an interrupted demo left it {dag_run['state']}")
        api.call("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
        say(f"Airflow is healthy; {DAG_ID} unpaused")
        return len(stale)
