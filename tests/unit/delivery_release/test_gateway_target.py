"""The gateway target: every state of a canary and a blue-green rollout, idempotency, conflicts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flightdeck.delivery.targets.gateway import GatewayTarget, TargetStateError
from flightdeck.serving.client import GatewayError
from flightdeck.serving.routes import parse_route_table

MODEL = "credit"
CHAMPION_ONLY = {"endpoints": {"default": {"policy": "single", "variants": {"champion": {"alias": "champion"}}},
                               "other": {"policy": "single", "variants": {"x": {"version": "9"}}}}}


class FakeGatewayClient:
    """The route-table calls of GatewayClient over an in-memory table, validated like the gateway does."""

    def __init__(self, document: dict) -> None:
        self.tables = [(document, datetime.now(UTC))]
        self.conflicts = 0  # answer the next N writes with 409, as if another writer got there first

    def routes(self) -> dict:
        document, created = self.tables[-1]
        return {"version": len(self.tables), "document": document, "created_at": created.isoformat()}

    def replace_routes(self, document: dict, comment: str | None = None, expected_version: int | None = None) -> int:
        if self.conflicts:
            self.conflicts -= 1
            self.tables.append((self.tables[-1][0], datetime.now(UTC)))
            raise GatewayError(409, "route table changed")
        assert expected_version == len(self.tables)
        table = parse_route_table(document)
        self.tables.append((table.model_dump(exclude_none=True), datetime.now(UTC)))
        return len(self.tables)


def endpoint(client: FakeGatewayClient) -> dict:
    return client.routes()["document"]["endpoints"]["default"]


def test_canary_walks_every_state_and_leaves_other_endpoints_alone():
    client = FakeGatewayClient(CHAMPION_ONLY)
    target = GatewayTarget(client, "default", MODEL, baseline="1", candidate="2", strategy="canary")

    state = target.deploy()
    assert (state.candidate, state.candidate_percent, state.revision) == ("2", 0.0, 2)
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


def test_re_running_a_step_creates_no_new_route_version():
    client = FakeGatewayClient(CHAMPION_ONLY)
    target = GatewayTarget(client, "default", MODEL, baseline="1", candidate="2", strategy="canary")
    first = target.set_weight(5)
    again = target.set_weight(5)
    # A re-run keeps the revision and its time: the step's gate window is the same window.
    assert (again.revision, again.changed_at) == (first.revision, first.changed_at)
    assert len(client.tables) == 2


def test_rollback_before_deploy_changes_nothing():
    client = FakeGatewayClient(CHAMPION_ONLY)
    target = GatewayTarget(client, "default", MODEL, baseline="1", candidate="2", strategy="canary")
    assert target.rollback().revision == 1
    assert len(client.tables) == 1


def test_a_concurrent_edit_is_retried_on_the_new_table():
    client = FakeGatewayClient(CHAMPION_ONLY)
    client.conflicts = 2
    target = GatewayTarget(client, "default", MODEL, baseline="1", candidate="2", strategy="canary")
    assert target.set_weight(50).candidate_percent == 50.0


def test_endless_conflicts_fail_with_a_clear_error():
    client = FakeGatewayClient(CHAMPION_ONLY)
    client.conflicts = 100
    target = GatewayTarget(client, "default", MODEL, baseline="1", candidate="2", strategy="canary")
    with pytest.raises(TargetStateError, match="kept changing"):
        target.set_weight(5)


def test_blue_green_shadows_the_idle_colour_then_switches_in_one_change():
    client = FakeGatewayClient(CHAMPION_ONLY)
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


def test_the_next_blue_green_rollout_uses_the_other_colour():
    client = FakeGatewayClient(CHAMPION_ONLY)
    GatewayTarget(client, "default", MODEL, "1", "2", "blue_green").promote()
    target = GatewayTarget(client, "default", MODEL, "2", "3", "blue_green")
    target.deploy()
    assert endpoint(client)["active"] == "green"
    assert endpoint(client)["variants"]["blue"]["version"] == "3"
    assert target.variant_names() == ("green", "blue")


def test_drill_faults_go_on_the_candidate_only():
    client = FakeGatewayClient(CHAMPION_ONLY)
    GatewayTarget(client, "default", MODEL, "1", "2", "canary",
                  candidate_faults={"error_rate": 0.05}).set_weight(5)
    variants = endpoint(client)["variants"]
    assert variants["canary"]["faults"] == {"latency_ms": 0.0, "error_rate": 0.05}
    assert "faults" not in variants["stable"]


def test_candidate_equal_to_baseline_is_refused():
    with pytest.raises(TargetStateError, match="already the baseline"):
        GatewayTarget(FakeGatewayClient(CHAMPION_ONLY), "default", MODEL, "2", "2", "canary")
