"""Route table validation and routing decisions (pure logic)."""

from __future__ import annotations

import pytest
from scipy.stats import chisquare

from flightdeck.serving.errors import (
    InvalidInputError,
    OverrideDisabledError,
    RouteTableError,
    UnknownEndpointError,
)
from flightdeck.serving.policies import CircuitBreaker, Router, unit_bucket
from flightdeck.serving.routes import default_route_table, load_route_file, parse_route_table


def endpoint(**spec):
    spec.setdefault("variants", {"blue": {"version": "1"}, "green": {"version": "2"}})
    return parse_route_table({"endpoints": {"e": spec}}).endpoints["e"]


def test_default_table_serves_the_champion():
    table = default_route_table()
    assert table.default == "default"
    assert table.endpoints["default"].variants["champion"].ref == "champion"


@pytest.mark.parametrize(("spec", "fragment"), [
    ({"policy": "single"}, "exactly one variant besides"),
    ({"policy": "blue_green"}, "needs `active`"),
    ({"policy": "blue_green", "active": "purple"}, "unknown variant 'purple'"),
    ({"policy": "canary"}, "needs `weights`"),
    ({"policy": "canary", "weights": {"blue": 0, "green": 0}}, "must not all be zero"),
    ({"policy": "canary", "weights": {"blue": -1, "green": 2}}, "negative"),
    ({"policy": "ab", "weights": {"blue": 1, "red": 1}}, "unknown variant 'red'"),
    ({"policy": "conditional", "conditions": [{"feature": "x", "op": "<", "value": 1, "variant": "blue"}]},
     "needs `conditions` and `default`"),
    ({"policy": "single", "variants": {"a": {"alias": "champion", "version": "1"}}}, "exactly one of"),
    ({"policy": "single", "variants": {"a": {"version": "latest"}}}, "variants.a.version"),
    ({"policy": "canary", "weights": {"blue": 1}, "shadow": {"variant": "nope"}}, "shadow.variant"),
    ({"policy": "canary", "weights": {"blue": 1}, "surprise": 1}, "surprise"),
])
def test_invalid_tables_name_the_problem(spec, fragment):
    spec.setdefault("variants", {"blue": {"version": "1"}, "green": {"version": "2"}})
    with pytest.raises(RouteTableError, match="route table is invalid") as caught:
        parse_route_table({"endpoints": {"e": spec}})
    assert fragment in str(caught.value)


def test_route_file_yaml(tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text("endpoints:\n  credit:\n    policy: single\n    variants:\n      live: {alias: champion}\n")
    assert load_route_file(path).default == "credit"
    path.write_text("endpoints: [oops")
    with pytest.raises(RouteTableError, match="cannot read route table"):
        load_route_file(path)


def test_blue_green_switches_instantly():
    assert Router("e", endpoint(policy="blue_green", active="blue")).choose({}).variant == "blue"
    assert Router("e", endpoint(policy="blue_green", active="green")).choose({}).variant == "green"


def test_canary_split_follows_weights():
    router = Router("e", endpoint(policy="canary", weights={"blue": 90, "green": 10}))
    picks = [router.choose({}).variant for _ in range(20_000)]
    observed = [picks.count("blue"), picks.count("green")]
    assert chisquare(observed, [18_000, 2_000]).pvalue > 0.001


def test_zero_weight_variant_gets_nothing():
    router = Router("e", endpoint(policy="canary", weights={"blue": 1, "green": 0}))
    assert {router.choose({}).variant for _ in range(2_000)} == {"blue"}


def test_ab_is_sticky_and_salted():
    spec = endpoint(policy="ab", weights={"blue": 50, "green": 50}, salt="exp-1")
    first, second = Router("e", spec), Router("e", spec)  # e.g. two workers
    units = [f"user-{i}" for i in range(2_000)]
    assigned = [first.choose({}, unit_id=u).variant for u in units]
    assert assigned == [second.choose({}, unit_id=u).variant for u in units]
    resalted = Router("e", endpoint(policy="ab", weights={"blue": 50, "green": 50}, salt="exp-2"))
    moved = sum(a != resalted.choose({}, unit_id=u).variant for a, u in zip(assigned, units, strict=True))
    assert 800 < moved < 1200  # a new salt re-randomises about half the units
    assert 0 <= unit_bucket("s", "u") < 1


def test_ab_without_unit_id_is_refused():
    router = Router("e", endpoint(policy="ab", weights={"blue": 1, "green": 1}))
    with pytest.raises(InvalidInputError, match="X-Unit-Id"):
        router.choose({})


def test_header_override():
    router = Router("e", endpoint(policy="blue_green", active="blue"))
    choice = router.choose({}, override="green")
    assert choice.variant == "green" and choice.overridden
    with pytest.raises(UnknownEndpointError, match="no variant 'red'"):
        router.choose({}, override="red")
    locked = Router("e", endpoint(policy="blue_green", active="blue", allow_override=False))
    assert locked.choose({}).variant == "blue"
    with pytest.raises(OverrideDisabledError, match="endpoint 'e' does not allow forcing") as refused:
        locked.choose({}, override="green", field="params.variant")
    assert refused.value.status == 403 and refused.value.field == "params.variant"
    assert "allow_override: true" in str(refused.value)


def test_conditional_routes_each_row():
    spec = endpoint(policy="conditional", default="blue",
                    conditions=[{"feature": "amount", "op": ">=", "value": 1000, "variant": "green"},
                                {"feature": "region", "op": "in", "value": ["north"], "variant": "green"}])
    choice = Router("e", spec).choose({"amount": [10, 5000, 20], "region": ["south", "south", "north"]})
    assert choice.rows == {"blue": [0], "green": [1, 2]}
    with pytest.raises(InvalidInputError, match="amount"):
        Router("e", spec).choose({"region": ["x"]})
    with pytest.raises(InvalidInputError, match="cannot be compared"):
        Router("e", spec).choose({"amount": ["many"], "region": ["x"]})


def test_ensemble_members_and_shadow_share():
    router = Router("e", endpoint(policy="ensemble", shadow={"variant": "green", "percent": 25}))
    assert router.choose({}).members == ("blue", "green")
    mirrored = sum(router.shadow() == "green" for _ in range(8_000))
    assert chisquare([mirrored, 8_000 - mirrored], [2_000, 6_000]).pvalue > 0.001
    assert Router("e", endpoint(policy="blue_green", active="blue")).shadow() is None


def test_circuit_breaker_opens_then_trials_then_closes():
    now = [0.0]
    breaker = CircuitBreaker(threshold=3, reset_seconds=10, clock=lambda: now[0])
    for _ in range(2):
        breaker.failure()
    assert breaker.allow() and breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 10.0
    assert breaker.state == "half_open"
    assert breaker.allow() and not breaker.allow()  # exactly one trial request
    breaker.failure()
    assert breaker.state == "open"
    now[0] = 20.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.allow()


def test_the_example_route_file_is_valid():
    from tests.support.models import REPO

    table = load_route_file(REPO / "include" / "config" / "routes.example.yaml")
    assert table.default == "credit" and set(table.endpoints) == {"credit", "credit-experiment", "credit-ensemble"}
