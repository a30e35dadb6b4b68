"""The gateway target and the one route-table editor it uses, over real HTTP: every state of a
canary and a blue-green rollout, idempotency, conflicts, and a rollout on a missing endpoint.

The gateway is the real application (admin API, route store on SQLite, validation that loads
every model a table names) served by uvicorn on loopback, with in-memory models instead of
MLflow; one server is shared by the module and each test starts from a fresh table.
"""

from __future__ import annotations

import threading
import time

import pytest

from flightdeck.config import Settings
from flightdeck.delivery.targets.gateway import GatewayTarget, TargetStateError
from flightdeck.errors import FlightdeckError
from flightdeck.serving.client import (
    EndpointNotFoundError,
    GatewayClient,
    GatewayRequestError,
    GatewayUnavailableError,
    RouteConflictError,
)
from tests.support import free_port
from tests.support.models import MODEL, FakeRegistry, onnx_model

TOKEN = "target-test-token-0123456789abcdef"
CHAMPION_ONLY = {"endpoints": {"default": {"policy": "single", "variants": {"champion": {"alias": "champion"}}},
                               "other": {"policy": "single", "variants": {"x": {"version": "9"}}}}}


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory):
    """A running gateway on a loopback port (uvicorn in a thread, one worker)."""
    import uvicorn

    from flightdeck.serving import db
    from flightdeck.serving.app import create_app
    from flightdeck.serving.gateway import Gateway
    from flightdeck.serving.models import ModelPool
    from flightdeck.serving.store import RouteStore

    home = tmp_path_factory.mktemp("target-gateway")
    settings = Settings(home=home, gateway_database_url=f"sqlite:///{home / 'gateway.db'}", model_name=MODEL,
                        admin_tokens={"ops": TOKEN}, grpc_port=0, route_poll_seconds=0.05,
                        stats_flush_seconds=0.05, predlog_flush_seconds=0.05)
    db.upgrade(settings.gateway_db_url)
    RouteStore(db.engine_for(settings.gateway_db_url)).replace(CHAMPION_ONLY, author="test")
    registry = FakeRegistry(versions={v: onnx_model(1 if v != "2" else 2) for v in ("1", "2", "3", "9")})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, Gateway(settings, ModelPool(registry))),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    db.dispose_engine(settings.gateway_db_url)


@pytest.fixture
def client(gateway_url):
    """An admin client on a gateway whose table is CHAMPION_ONLY again."""
    with GatewayClient(gateway_url, TOKEN) as admin:
        admin.replace_routes(CHAMPION_ONLY, comment="test starts from the champion alone")
        yield admin


def endpoint(client: GatewayClient) -> dict:
    return client.routes()["document"]["endpoints"]["default"]


class RivalOnRead(GatewayClient):
    """A client that, right after each of its first `races` reads of the route table, lets a
    rival store another table: its own write, made with the version it read, then loses."""

    def __init__(self, base_url: str, races: int, rival_edit) -> None:
        super().__init__(base_url, TOKEN)
        self.races = races
        self.rival = GatewayClient(base_url, TOKEN)
        self.rival_edit = rival_edit

    def routes(self) -> dict:
        stored = super().routes()
        if self.races:
            self.races -= 1
            self.rival.update_endpoint("other", self.rival_edit, comment="rival")
        return stored

    def close(self) -> None:
        self.rival.close()
        super().close()


def relabel(spec: dict) -> dict:
    """The rival's edit: another variant name on endpoint `other`, changing every time."""
    (name, variant), = spec["variants"].items()
    return {**spec, "variants": {f"{name}x": variant}}


# ---- the rollout states -----------------------------------------------------------------------
def test_canary_walks_every_state_and_leaves_other_endpoints_alone(client):
    start = client.routes()["version"]
    target = GatewayTarget(client, "default", MODEL, baseline="1", candidate="2", strategy="canary")

    state = target.deploy()
    assert (state.candidate, state.candidate_percent, state.revision) == ("2", 0.0, start + 1)
    assert endpoint(client)["weights"] == {"stable": 100.0, "canary": 0.0}
    assert endpoint(client)["variants"]["canary"] == {"model": MODEL, "version": "2"}

    assert target.set_weight(25).candidate_percent == 25.0
    assert endpoint(client)["weights"] == {"stable": 75.0, "canary": 25.0}
    promoted = target.promote()
    assert promoted.candidate_percent == 100.0
    assert endpoint(client)["policy"] == "single"
    assert endpoint(client)["variants"] == {"stable": {"model": MODEL, "version": "2"}}
    assert client.routes()["document"]["endpoints"]["other"]["variants"] == {"x": {"version": "9"}}

    rolled_back = target.rollback()
    assert (rolled_back.candidate, rolled_back.candidate_percent) == (None, 0.0)
    assert endpoint(client)["variants"] == {"stable": {"model": MODEL, "version": "1"}}
    history = client.history(limit=4)
    assert [h["comment"].split(" (")[0] for h in history] == [
        "roll back to baseline", "promote candidate", "candidate at 25 %", "deploy candidate with no live traffic"]


def test_re_running_a_step_creates_no_new_route_version(client):
    start = client.routes()["version"]
    target = GatewayTarget(client, "default", MODEL, baseline="1", candidate="2", strategy="canary")
    first = target.set_weight(5)
    again = target.set_weight(5)
    # A re-run keeps the revision and its time: the step's gate window is the same window.
    assert (again.revision, again.changed_at) == (first.revision, first.changed_at)
    assert client.routes()["version"] == start + 1


def test_rollback_before_deploy_changes_nothing(client):
    start = client.routes()["version"]
    target = GatewayTarget(client, "default", MODEL, baseline="1", candidate="2", strategy="canary")
    assert target.rollback().revision == start
    assert client.routes()["version"] == start


def test_blue_green_shadows_the_idle_colour_then_switches_in_one_change(client):
    target = GatewayTarget(client, "default", MODEL, baseline="1", candidate="2", strategy="blue_green",
                           shadow_percent=50)
    assert target.deploy().candidate_percent == 0.0
    spec = endpoint(client)
    assert spec["active"] == "blue" and spec["shadow"] == {"variant": "green", "percent": 50.0}
    assert target.variant_names() == ("blue", "green")

    assert target.promote().candidate_percent == 100.0
    assert endpoint(client)["active"] == "green"
    assert set(endpoint(client)["variants"]) == {"blue", "green"}  # the old colour stays loaded
    assert target.variant_names() == ("blue", "green")
    assert target.rollback().candidate_percent == 0.0
    assert endpoint(client)["active"] == "blue"
    with pytest.raises(ValueError, match="0 or 100"):
        target.set_weight(30)


def test_the_next_blue_green_rollout_uses_the_other_colour(client):
    GatewayTarget(client, "default", MODEL, "1", "2", "blue_green").promote()
    target = GatewayTarget(client, "default", MODEL, "2", "3", "blue_green")
    target.deploy()
    assert endpoint(client)["active"] == "green"
    assert endpoint(client)["variants"]["blue"]["version"] == "3"
    assert target.variant_names() == ("green", "blue")


@pytest.mark.parametrize(("strategy", "later_step"), [("blue_green", "promote"), ("canary", "set_weight")])
def test_an_old_runs_rollback_re_run_after_a_later_rollout_leaves_the_endpoint_alone(client, strategy, later_step):
    first = GatewayTarget(client, "default", MODEL, "1", "2", strategy)
    first.promote()
    later = GatewayTarget(client, "default", MODEL, "2", "3", strategy)
    later.promote() if later_step == "promote" else later.set_weight(25)
    before = client.routes()

    rerun = GatewayTarget(client, "default", MODEL, "1", "2", strategy)  # the first run's task, cleared
    state = rerun.rollback()

    after = client.routes()
    assert (after["version"], after["document"]) == (before["version"], before["document"])
    assert state.revision == before["version"]
    assert "now serves versions ['2', '3']" in rerun.left_alone and "leaves it as it is" in rerun.left_alone
    assert later.rollback().candidate_percent == 0.0 and later.left_alone is None  # its owner still can


def test_drill_faults_go_on_the_candidate_only(client):
    GatewayTarget(client, "default", MODEL, "1", "2", "canary", candidate_faults={"error_rate": 0.05}).set_weight(5)
    variants = endpoint(client)["variants"]
    assert variants["canary"]["faults"] == {"latency_ms": 0.0, "error_rate": 0.05}
    assert "faults" not in variants["stable"]


def test_candidate_equal_to_baseline_is_refused(client):
    with pytest.raises(TargetStateError, match="already the baseline"):
        GatewayTarget(client, "default", MODEL, "2", "2", "canary")


# ---- a rollout on an endpoint the gateway does not have -------------------------------------------
def test_a_rollout_on_a_missing_endpoint_fails_at_deploy_naming_it(client):
    start = client.routes()["version"]
    target = GatewayTarget(client, "defualt", MODEL, baseline="1", candidate="2", strategy="canary")
    for move in (target.deploy, lambda: target.set_weight(5), target.promote):
        with pytest.raises(EndpointNotFoundError) as caught:
            move()
        message = str(caught.value)
        assert "'defualt'" in message and "['default', 'other']" in message and "Fix:" in message
        assert isinstance(caught.value, FlightdeckError)  # a user error: the task fails without retries
    # Nothing was created, and a rollback (run on any failure) has nothing to undo.
    assert client.routes()["version"] == start and "defualt" not in client.routes()["document"]["endpoints"]
    assert (target.rollback().candidate, client.routes()["version"]) == (None, start)


# ---- the route-table editor -----------------------------------------------------------------------
def test_a_concurrent_edit_is_retried_on_the_new_table_and_both_land(client, gateway_url):
    start = client.routes()["version"]
    with RivalOnRead(gateway_url, races=2, rival_edit=relabel) as racing:
        target = GatewayTarget(racing, "default", MODEL, baseline="1", candidate="2", strategy="canary")
        assert target.set_weight(50).candidate_percent == 50.0
    table = client.routes()
    # Two rival tables, then the rollout's edit made on the second of them: nothing was lost.
    assert table["version"] == start + 3
    assert table["document"]["endpoints"]["other"]["variants"] == {"xxx": {"version": "9"}}
    assert table["document"]["endpoints"]["default"]["weights"] == {"stable": 50.0, "canary": 50.0}
    assert [h["comment"] for h in client.history(limit=3)][1:] == ["rival", "rival"]


def test_update_endpoint_reports_what_it_did(client, gateway_url):
    start = client.routes()["version"]
    with RivalOnRead(gateway_url, races=1, rival_edit=relabel) as racing:
        update = racing.update_endpoint("other", relabel, comment="mine")
    assert (update.written, update.version, update.attempts) == (True, start + 2, 2)
    assert update.spec["variants"] == {"xxx": {"version": "9"}}
    assert client.routes()["document"]["endpoints"]["other"]["variants"] == update.spec["variants"]
    unchanged = client.update_endpoint("other", lambda spec: dict(spec), comment="no-op")
    assert (unchanged.written, unchanged.version, unchanged.attempts) == (False, start + 2, 1)
    created = client.update_endpoint("new", lambda spec: {"policy": "single", "variants": {"a": {"version": "1"}}},
                                     create=True)
    assert created.written and set(client.routes()["document"]["endpoints"]) == {"default", "other", "new"}


def test_endless_conflicts_fail_with_a_typed_error_naming_the_endpoint(client, gateway_url):
    start = client.routes()["version"]
    with RivalOnRead(gateway_url, races=100, rival_edit=relabel) as racing:
        target = GatewayTarget(racing, "default", MODEL, baseline="1", candidate="2", strategy="canary")
        with pytest.raises(RouteConflictError) as caught:
            target.set_weight(5)
    assert caught.value.endpoint == "default" and caught.value.attempts == 5 and caught.value.status == 409
    assert "'default'" in str(caught.value) and "Fix:" in str(caught.value)
    assert client.routes()["version"] == start + 5  # the rival's five tables; the rollout wrote none


def test_gateway_answers_are_typed_by_status(client, gateway_url):
    with pytest.raises(GatewayRequestError) as invalid:
        client.update_endpoint("default", lambda spec: {**spec, "policy": "canary"})
    assert invalid.value.status == 422 and "weights" in str(invalid.value)
    assert isinstance(invalid.value, FlightdeckError)
    with GatewayClient(gateway_url, "wrong-token") as stranger, pytest.raises(GatewayRequestError) as denied:
        stranger.routes()
    assert denied.value.status == 403
    assert not issubclass(GatewayUnavailableError, FlightdeckError)  # a 5xx may be retried


def test_the_release_demo_resets_its_endpoint_through_the_same_editor(client):
    """An interrupted demo may leave a canary: the next run puts the champion back alone, once."""
    from flightdeck.devtools import release_demo
    from tests.support.models import records

    class Aliases:
        def aliases(self, model: str) -> dict[str, str]:
            return {"champion": "1", "challenger": "2"}

    GatewayTarget(client, release_demo.ENDPOINT, MODEL, "1", "2", "canary").set_weight(20)
    start = client.routes()["version"]
    release_demo._serve_champion_alone(client, Aliases(), MODEL, records(1)[0])
    assert client.routes()["version"] == start + 1
    assert client.routes()["document"]["endpoints"][release_demo.ENDPOINT] == {
        "policy": "single", "variants": {"stable": {"model": MODEL, "version": "1"}}, "allow_override": True}
    assert client.routes()["document"]["endpoints"]["other"]["variants"] == {"x": {"version": "9"}}
    release_demo._serve_champion_alone(client, Aliases(), MODEL, records(1)[0])  # already so: nothing written
    assert client.routes()["version"] == start + 1
