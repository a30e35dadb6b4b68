"""`analyse_day` under a bandit on a real gateway database (PostgreSQL): the sample-ratio check reads
the route history for the weights in force when each unit was assigned, passes a split drawn with
them and blocks one that is not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from flightdeck.experiments.definitions import parse_definition
from flightdeck.experiments.runs import analyse_day, route_weights
from flightdeck.serving import db
from flightdeck.serving.policies import Router
from flightdeck.serving.predlog import PredictionRecord, _insert_rows
from flightdeck.serving.routes import parse_route_table
from flightdeck.serving.store import RouteStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

START = datetime(2026, 11, 2, tzinfo=UTC)
# The bandit's three route versions (one a day), each moving both endpoints' traffic towards b.
WEIGHTS = [{"a": 50, "b": 50}, {"a": 30, "b": 70}, {"a": 10, "b": 90}]
ENDPOINTS = ("fair", "stale")
UNITS_PER_DAY = 1200


def _table(weights: dict) -> dict:
    return {"endpoints": {name: {"policy": "ab", "salt": f"salt-{name}", "weights": weights,
                                 "variants": {"a": {"version": "1"}, "b": {"version": "2"}}}
                          for name in ("default", *ENDPOINTS)}}


@pytest.fixture(scope="module")
def store(module_postgres_url):
    """Three route versions and three days of sticky A/B traffic on each endpoint: `fair` is assigned by
    the version in force, `stale` keeps the first version's 50/50 split while the log names the new one."""
    db.upgrade(module_postgres_url)
    engine = db.engine_for(module_postgres_url)
    routes = RouteStore(engine)
    versions = [routes.replace(_table(w), author="bandit", comment="thompson-bandit: test").version for w in WEIGHTS]
    first = parse_route_table(_table(WEIGHTS[0]))
    rng = np.random.default_rng(11)
    records = []
    for day, version in enumerate(versions):
        table = parse_route_table(routes.get(version).document)
        for endpoint in ENDPOINTS:
            spec = (table if endpoint == "fair" else first).endpoints[endpoint]
            router = Router(endpoint, spec)
            units = [f"{endpoint}-d{day}-{i}" for i in range(UNITS_PER_DAY)]
            units += [f"{endpoint}-d0-{i}" for i in range(0, UNITS_PER_DAY, 4)] if day else []  # returning units
            for i, unit in enumerate(units):
                variant = router.choose({}, unit_id=unit).variant
                records.append(PredictionRecord(
                    f"{endpoint}-{day}-{i}", 0, unit, endpoint, variant, "1" if variant == "a" else "2", version,
                    "live", "h", float(rng.beta(2, 7)), 5.0,
                    created_at=START + timedelta(days=day, hours=2, seconds=i)))
    with db.write_transaction(engine) as conn:
        _insert_rows(conn, [(START, records)])
    yield engine, versions


@pytest.fixture
def gateway_db(store, module_postgres_url, flightdeck_home, monkeypatch):
    from flightdeck.config import get_settings

    monkeypatch.setenv("FLIGHTDECK_GATEWAY_DATABASE_URL", module_postgres_url)
    get_settings.cache_clear()
    yield store
    get_settings.cache_clear()


def _definition(endpoint: str):
    return parse_definition({
        "name": f"bandit-{endpoint}", "endpoint": endpoint, "unit": "unit_id", "policy": "bandit",
        "variants": {"a": {"version": "1", "weight": 0.5}, "b": {"version": "2", "weight": 0.5}}, "control": "a",
        "primary_metric": "approval_rate", "minimum_detectable_effect": 0.01, "bandit": {"top_two_beta": 0.8},
        "start_date": START.date().isoformat(), "max_duration_days": 28})


def test_route_weights_come_from_the_route_history(gateway_db):
    engine, versions = gateway_db
    assert route_weights(engine, "fair", [*versions, 99]) == {
        versions[0]: WEIGHTS[0], versions[1]: WEIGHTS[1], versions[2]: WEIGHTS[2], 99: None}


def test_a_split_drawn_with_the_weights_in_force_passes(gateway_db):
    result = analyse_day(_definition("fair"), (START + timedelta(days=2)).date())
    srm = result["srm"]
    assert srm is not None and not srm["mismatch"], result["reasons"]
    expected_b = (0.5 + 0.7 + 0.9) / 3  # as many new units each day
    assert srm["expected_share"]["b"] == pytest.approx(expected_b, abs=1e-9)
    assert sum(srm["observed"].values()) == 3 * UNITS_PER_DAY  # returning units count once, in their first arm
    assert result["status"] != "srm_mismatch"


def test_a_split_that_ignored_the_bandit_is_blocked(gateway_db):
    result = analyse_day(_definition("stale"), (START + timedelta(days=2)).date())
    srm = result["srm"]
    assert srm is not None and srm["mismatch"]
    assert srm["observed_share"]["b"] < srm["expected_share"]["b"]
    assert result["status"] == "srm_mismatch" and result["action"] == "keep_running"
    assert "sample-ratio mismatch" in result["reasons"][0]
