"""`flightdeck exercises check N` against real state: every checker fails on the guide's starting
state (`guide_home`), passes after the reference solution (tests/docs/solutions/reference.py), and
names the criterion that a spoiled solution misses."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.docs.conftest import REPO, base_env, copy_home
from tests.docs.solutions import reference

FLIGHTDECK = str(Path(sys.executable).with_name("flightdeck"))
NUMBERS = list(range(1, 21))


@contextmanager
def flightdeck_home(home: Path):
    """FLIGHTDECK_HOME = `home` for this process's settings, restored afterwards."""
    from flightdeck.config import get_settings

    saved = {k: os.environ.get(k) for k in ("FLIGHTDECK_HOME", "FLIGHTDECK_EXPERIMENTS_DIR")}
    os.environ["FLIGHTDECK_HOME"] = str(home)
    os.environ.pop("FLIGHTDECK_EXPERIMENTS_DIR", None)
    get_settings.cache_clear()
    try:
        yield home
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


def criteria(number: int):
    from flightdeck.guide.checks import EXERCISES, Context

    return EXERCISES[number].check(Context())


def shown(found) -> str:
    return "\n".join(f"[{'met' if c.met else 'MISSING'}] {c.text} — {c.found}" for c in found)


def missing(number: int, words: str) -> None:
    """Exercise `number` is not done, and the criterion containing `words` is reported missing."""
    found = criteria(number)
    matching = [c for c in found if words in c.text]
    assert matching, f"no criterion of exercise {number} mentions {words!r}:\n{shown(found)}"
    assert not any(c.met for c in matching), f"exercise {number}: {words!r} should be missing:\n{shown(found)}"


@pytest.fixture(scope="module")
def start_home(guide_home, tmp_path_factory) -> Path:
    return copy_home(guide_home, tmp_path_factory.mktemp("exercises") / "start")


@pytest.fixture(scope="module")
def solved_home(guide_home, tmp_path_factory) -> Path:
    """One home where every reference solution but the streaming one (own test) has been applied;
    their endpoints, days and files do not overlap."""
    home = copy_home(guide_home, tmp_path_factory.mktemp("exercises") / "solved")
    with flightdeck_home(home):
        reference.solve_01()
        reference.solve_02_03()
        reference.solve_gateway()
        reference.solve_13()
        reference.solve_15()
        reference.solve_06_07()
        reference.solve_08()
        reference.solve_14()
        reference.solve_19()
        reference.solve_20()
    return home


def test_every_checker_fails_on_the_starting_state(start_home):
    with flightdeck_home(start_home):
        for number in NUMBERS:
            found = criteria(number)
            assert found and not all(c.met for c in found), f"exercise {number} passes untouched:\n{shown(found)}"
            assert all(c.text for c in found)


@pytest.mark.parametrize("number", [n for n in NUMBERS if n != 5])
def test_checker_passes_after_the_reference_solution(solved_home, number):
    with flightdeck_home(solved_home):
        found = criteria(number)
    assert found and all(c.met for c in found), f"exercise {number}:\n{shown(found)}"


def test_the_streaming_checker_fails_then_passes_on_real_redis(start_home, tmp_path):
    from tests.support.services import REDIS_URL, redis_client

    client = redis_client()
    home = copy_home(start_home, tmp_path / "home")
    prefix = f"exercise05-{uuid.uuid4().hex[:8]}"
    try:
        with flightdeck_home(home):
            missing(5, "the answer file")
            reference.solve_05(REDIS_URL, prefix)
            found = criteria(5)
            assert all(c.met for c in found), shown(found)
            # A result lost between the scorer and its reader is noticed.
            scores = f"{prefix}:scores"
            first = client.xrange(scores, count=1)[0][0]
            client.xdel(scores, first)
            missing(5, "every input event has exactly one outcome")
    finally:
        keys = list(client.scan_iter(f"{prefix}*")) + list(client.scan_iter(f"flightdeck:stream:{prefix}*"))
        if keys:
            client.delete(*keys)


def _answer(home: Path, number: int) -> dict:
    return yaml.safe_load((home / "exercises" / f"{number:02d}.yaml").read_text())


@contextmanager
def spoiled_answer(home: Path, number: int, **changes):
    path = home / "exercises" / f"{number:02d}.yaml"
    original = path.read_text()
    path.write_text(yaml.safe_dump({**yaml.safe_load(original), **changes}))
    try:
        yield
    finally:
        path.write_text(original)


def test_wrong_answers_are_reported(solved_home):
    home = solved_home
    with flightdeck_home(home):
        cases = [
            (1, {"champion": 2}, "`champion` is the version"),
            (7, {"in_cohort": _answer(home, 7)["not_in_cohort"]}, "`in_cohort` lists"),
            (8, {"break_even_rps": 0.5}, "`break_even_rps` is the break-even"),
            (8, {"cheaper": "both"}, "`cheaper`"),
            (12, {"canary_share": 0.5}, "`canary_share`"),
            (13, {"overrepresented_variant": "nobody"}, "`overrepresented_variant`"),
            (13, {"route_weights": {"a": 50, "b": 50}}, "`route_weights`"),
            (14, {"units_per_arm_sequential": 1}, "`units_per_arm_sequential`"),
            (14, {"baseline": 0.9}, "`baseline`"),
            (15, {"recommendation": "reject_everything"}, "`recommendation`"),
            (18, {"gateway_scores": [s + 1e-6 for s in _answer(home, 18)["gateway_scores"]]},
             "the gateway's scores equal the batch scores"),
        ]
        for number, changes, words in cases:
            with spoiled_answer(home, number, **changes):
                missing(number, words)
        policy = home / "exercises" / "release_policy.yaml"
        original = policy.read_text()
        policy.write_text(original.replace("require_approval: true", "require_approval: false"))
        try:
            missing(19, "still requires a human approval")
        finally:
            policy.write_text(original)
        ship = home / "exercises" / "ship.yaml"
        original = ship.read_text()
        ship.write_text(original.replace("policy: sequential", "policy: fixed"))
        try:
            missing(20, "it is a sequential test")
        finally:
            ship.write_text(original)


def test_spoiled_state_is_reported(solved_home, tmp_path):
    """Break one thing per exercise in a copy of the solved home; each checker names it."""
    import shutil

    from flightdeck.delivery.release import AUDIT_TAG

    home = copy_home(solved_home, tmp_path / "home")
    with flightdeck_home(home):
        shutil.rmtree(home / "reports" / "ds=2026-01-21")
        shutil.rmtree(home / "data" / "predictions" / "ds=2026-01-06")
        ends = reference.ENDPOINTS
        reference.edit_endpoint("credit-v2", {"policy": "single", "variants": {"v2": {"alias": "challenger"}}})
        reference.edit_endpoint("bg", {**ends["bg"], "active": "blue"}, comment="back")
        reference.edit_endpoint("bg-drill", {**ends["bg-drill"], "allow_override": False})
        reference.edit_endpoint("by-age", {**ends["by-age"], "conditions": [
            {"feature": "age", "op": "<", "value": 40, "variant": "young"}]})
        reference.edit_endpoint("ensemble-safe", {**ends["ensemble-safe"],
                                                  "fallback": {"variant": "safe", "latency_budget_ms": 500}})
        registry = reference.registry()
        name = reference.settings().model_name
        for key in registry.get_version(name, "2").tags:
            if key.startswith(AUDIT_TAG + "."):
                registry.client.delete_model_version_tag(name, "2", key)
        bundles = home / "edge" / "store" / name / "bundles"
        golden = next(bundles.glob("*/golden.json"))
        golden.write_bytes(golden.read_bytes() + b" ")

        missing(2, "the monitoring report")
        missing(3, "a prediction partition predictions/ds=2026-01-06 exists")
        missing(4, "by number, not by alias")
        missing(6, "every file of the bundle matches")
        missing(9, "the challenger's colour is active now")
        missing(10, "the rollback was one change of `active`")
        missing(11, "carries a canary release audit")
        missing(16, "everyone 30 or older")
        missing(17, "a fallback variant outside the ensemble")


def test_the_command_line(start_home, solved_home, capsys):
    from flightdeck.cli import main

    assert main(["exercises", "list"]) == 0
    listing = capsys.readouterr().out
    assert all(f"docs/exercises/{n:02d}-" in listing for n in NUMBERS)
    assert main(["exercises", "check", "99"]) == 2
    assert "there is no exercise 99" in capsys.readouterr().err
    for home, code, words in ((start_home, 1, "[MISSING]"), (solved_home, 0, "4 of 4 criteria met")):
        done = subprocess.run([FLIGHTDECK, "exercises", "check", "19"], env=base_env(home), cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == code, done.stdout + done.stderr
        assert words in done.stdout, done.stdout


def test_every_exercise_has_a_page_linking_its_chapter():
    from flightdeck.guide.checks import EXERCISES

    for exercise in EXERCISES.values():
        page = REPO / exercise.page
        assert page.exists(), page
        text = page.read_text()
        assert f"(../guide/{exercise.chapter})" in text, f"{page} does not link ../guide/{exercise.chapter}"
        assert f"flightdeck exercises check {exercise.number}" in text


def test_airflow_runs_are_a_criterion_only_with_an_airflow_url(solved_home):
    """With --airflow-url, exercises 3 and 11 also ask Airflow's REST API; an Airflow that does not
    answer leaves that criterion missing, with the reason."""
    from flightdeck.devtools.launch import free_port
    from flightdeck.guide.checks import EXERCISES, Context
    from flightdeck.guide.checks.batch import pinned_runs
    from flightdeck.guide.checks.serving import drill_run

    with flightdeck_home(solved_home):
        assert all(c.met for c in EXERCISES[3].check(Context()))
        found = EXERCISES[3].check(Context(airflow_url=f"http://127.0.0.1:{free_port()}"))
    airflow = [c for c in found if "Airflow's REST API" in c.text]
    assert len(airflow) == 1 and not airflow[0].met and "did not answer" in airflow[0].found, shown(found)
    assert all(c.met for c in found if c not in airflow)
    # The matching of the REST API's `dag_runs` entries (the shape GET /api/v2/dags/{id}/dagRuns returns).
    runs = [{"dag_run_id": "backfill__2026-01-05T02:00:00+00:00", "logical_date": "2026-01-05T02:00:00Z",
             "state": "success", "conf": {"model_ref": "2"}},
            {"dag_run_id": "b", "logical_date": "2026-01-06T02:00:00Z", "state": "failed", "conf": {"model_ref": "2"}},
            {"dag_run_id": "c", "logical_date": "2026-01-07T02:00:00Z", "state": "success", "conf": {}}]
    assert pinned_runs(runs, ("2026-01-05", "2026-01-06", "2026-01-07"), "2") == {"2026-01-05"}
    assert drill_run({"state": "failed", "conf": {"endpoint": "canary-drill", "drill_faults": {"latency_ms": 20}}},
                     "canary-drill")
    assert not drill_run({"state": "success", "conf": {"endpoint": "canary-drill",
                                                        "drill_faults": {"latency_ms": 20}}}, "canary-drill")
    assert not drill_run({"state": "failed", "conf": {"endpoint": "canary-drill",
                                                       "drill_faults": {"latency_ms": 5}}}, "canary-drill")
