"""The promotion DAGs under a real scheduler (the session's `airflow standalone`), where the human
gate is real. Two scenarios answer it as an approver does, in a real browser: the approved canary
is approved and the blue-green rejected on the run's Required Actions page, with the gate report
in view (tests/e2e/ui_actions.py); the others answer through the REST API (PATCH …/hitlDetails,
what that page sends). Whatever the browser does, a parked run is answered and finished before the
test ends (`answered_and_finished`): a run left waiting would hold the model's release lock.

The package's release world (one gateway, one MLflow registry) serves every test; each test
resets the champion and the route table first. The same two scenarios also look at their run in
the cockpit plugin (tests/e2e/cockpit_pages.py): the approved canary while it waits for its
approval, the rejected blue-green once it has rolled back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest

from flightdeck.devtools.airflow_api import AirflowApiError, AirflowRest
from tests.e2e.browser import open_page
from tests.e2e.cockpit_pages import check_pending_release, check_rolled_back_release
from tests.e2e.ui_actions import answer_required_action
from tests.support.models import MODEL
from tests.support.poll import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

FAST = {"model_name": MODEL, "bake_seconds": 3, "max_step_seconds": 60, "look_seconds": 1,
        "post_promotion_bake_seconds": 3,
        "gates": {"min_requests": 100, "min_requests_hard_fail": 30, "min_rows_for_distribution": 200},
        "backtest": {"auc_margin": 0.05, "logloss_margin": 1.0, "min_labelled_rows": 200, "max_rows": 2000}}
FINISHED = {"success", "failed"}
# What the approver must see of the request's body: the step's verdict and its gate table.
GATE_REPORT = ["step_1_gate: pass", "confidence sequence", "error_rate"]
DAGS = ("promote_canary", "promote_blue_green")


@pytest.fixture(scope="module")
def setup(airflow, release_world):
    for dag_id in DAGS:
        airflow.set_paused(dag_id, False)
    yield release_world, airflow, AirflowRest(airflow.url)
    for dag_id in DAGS:
        airflow.set_paused(dag_id, True)


def finish(api: AirflowRest, dag_id: str, run_id: str, timeout: float = 400) -> dict[str, str]:
    eventually(lambda: api.run_state(dag_id, run_id) in FINISHED, timeout, 2, f"{dag_id} run {run_id} to finish")
    return api.task_states(dag_id, run_id)


def awaiting_approval(api: AirflowRest, dag_id: str, run_id: str) -> tuple[dict, datetime]:
    """The pending HITL request of the run's `approve` task once the task waits for it, and when
    it was first seen waiting."""
    def pending():
        states = api.task_states(dag_id, run_id)
        assert api.run_state(dag_id, run_id) not in FINISHED, f"run ended before asking: {states}"
        if states.get("approve") != "awaiting_input":
            return None
        return api.pending_approval(dag_id, run_id)
    request = eventually(pending, 400, 2, f"the approval of {run_id}")
    return request, datetime.now(UTC)


def respond(api: AirflowRest, dag_id: str, run_id: str, option: str, parked_since: datetime) -> None:
    # Answered once the scheduler has processed the task's parking, as a human's answer would be.
    api.respond(dag_id, run_id, option, parked_since=parked_since)


@contextmanager
def answered_and_finished(api: AirflowRest, dag_id: str, run_id: str, option: str, parked_since: datetime,
                          outcome: dict) -> Iterator[None]:
    """Around a browser's answer: afterwards, whatever happened in the block, the run's approval is
    answered (with `option` through the REST API when the browser did not get to it) and the run
    has finished; its task states go into `outcome`. An error in the block still fails the test."""
    try:
        yield
    finally:
        if api.pending_approval(dag_id, run_id) is not None:
            try:
                respond(api, dag_id, run_id, option, parked_since)
            except AirflowApiError:  # the browser's answer landed in between
                if api.pending_approval(dag_id, run_id) is not None:
                    raise
        outcome.update(finish(api, dag_id, run_id))


def answer_in_browser(browser, api: AirflowRest, airflow, dag_id: str, run_id: str, option: str, parked: datetime,
                      shots) -> None:
    """The approver's answer on the run's Required Actions page, given once the scheduler has processed
    the parking (as `respond` waits), the gate report in view."""
    with open_page(browser) as page:
        answer_required_action(page, airflow.url, dag_id, run_id, option, GATE_REPORT,
                               lambda: api.wait_for_scheduler_loops(parked), shots,
                               f"ui-required-action-{option.lower()}.png")
    answered = next(item for item in api.call("GET", f"{api.run_path(dag_id, run_id)}/hitlDetails")["hitl_details"]
                    if item["task_instance"]["task_id"] == "approve")
    assert answered["response_received"] and answered["chosen_options"] == [option], answered


def champion(world) -> str:
    return world.registry().aliases(MODEL)["champion"]


def served_version(world) -> str:
    with world.client() as client:
        spec = client.routes()["document"]["endpoints"]["default"]
    live = spec.get("active") or next(iter(spec["variants"]))
    assert spec["policy"] in ("single", "blue_green"), f"left half-switched: {spec}"
    return spec["variants"][live]["version"]


def test_an_approved_canary_is_promoted(setup, browser, screenshots):
    world, airflow, api = setup
    world.reset(candidate="2")
    states: dict[str, str] = {}
    with world.load():
        run_id = api.trigger("promote_canary", {**FAST, "steps": [50]})
        request, parked = awaiting_approval(api, "promote_canary", run_id)
        # The approver sees the gate report in the request's body, and the cockpit shows the run waiting.
        assert "step_1_gate: pass" in request["body"] and "error_rate" in request["body"]
        with world.client() as gateway:
            routes = gateway.routes()
        with answered_and_finished(api, "promote_canary", run_id, "Approve", parked, states):
            with open_page(browser) as page:
                check_pending_release(page, airflow.url, routes, "promote_canary", run_id, screenshots)
            answer_in_browser(browser, api, airflow, "promote_canary", run_id, "Approve", parked, screenshots)
    assert api.run_state("promote_canary", run_id) == "success", states
    assert states["post_promotion_gate"] == "success" and states["rollback"] == "skipped"
    assert (champion(world), served_version(world)) == ("2", "2")


def test_a_rejected_approval_rolls_back(setup, browser, screenshots):
    world, airflow, api = setup
    world.reset(candidate="2")
    states: dict[str, str] = {}
    with world.load():
        run_id = api.trigger("promote_blue_green", FAST)
        _, parked = awaiting_approval(api, "promote_blue_green", run_id)
        with answered_and_finished(api, "promote_blue_green", run_id, "Reject", parked, states):
            answer_in_browser(browser, api, airflow, "promote_blue_green", run_id, "Reject", parked, screenshots)
    assert states["approve"] == "failed" and states["rollback"] == "success", states
    assert states["cut_over"] != "success"
    assert (champion(world), served_version(world)) == ("1", "1")
    with open_page(browser) as page:
        check_rolled_back_release(page, airflow.url, airflow.home, world.registry(), "promote_blue_green", run_id,
                                  screenshots)


def test_an_approval_timeout_rolls_back(setup):
    world, _, api = setup
    world.reset(candidate="2")
    with world.load():
        run_id = api.trigger("promote_blue_green", {**FAST, "approval_timeout_minutes": 0.1})
        states = finish(api, "promote_blue_green", run_id)
    assert states["approve"] == "failed" and states["rollback"] == "success", states
    assert (champion(world), served_version(world)) == ("1", "1")


def test_killed_mid_step_then_resumed_ends_promoted_or_rolled_back_never_split(setup):
    world, airflow, api = setup
    world.reset(candidate="2")
    with world.load():
        run_id = api.trigger("promote_blue_green", {**FAST, "bake_seconds": 25, "max_step_seconds": 90,
                                                    "require_approval": False})
        eventually(lambda: api.task_states("promote_blue_green", run_id).get("step_1_gate") == "deferred", 300, 2,
                   "the shadow gate to defer")
        airflow.kill()  # scheduler, triggerer, workers: all gone at once
        airflow.start()
        states = finish(api, "promote_blue_green", run_id, timeout=500)
    outcome = (champion(world), served_version(world))
    assert outcome in {("1", "1"), ("2", "2")}, f"half-switched: {outcome} {states}"
    if api.run_state("promote_blue_green", run_id) == "success":
        assert outcome == ("2", "2") and states["rollback"] == "skipped"
    else:
        assert outcome == ("1", "1") and states["rollback"] == "success"
