"""The bandit against a real gateway (`flightdeck serve`, one worker, PostgreSQL, a real MLflow
registry): its weights land in the route table through the admin API, the route history names
the bandit and its assignment probabilities, and new units are then split by the new weights."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from scipy.stats import chisquare

from flightdeck.experiments.bandit import BANDIT_NAME, BanditDecision, ThompsonBandit, apply_weights
from flightdeck.serving.client import GatewayClient
from tests.support.gateway import AUTH, TOKEN, gateway_process
from tests.support.models import MODEL, onnx_model, records
from tests.support.poll import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# Both arms serve the one registered version (registering a second one costs ~15 s of MLflow):
# the bandit's rewards are simulated per arm, the gateway's part is the split.
AB = {"endpoints": {"credit": {"policy": "ab", "salt": "bandit-test", "weights": {"stable": 50, "candidate": 50},
                               "variants": {"stable": {"alias": "champion"}, "candidate": {"version": "1"}}}}}
TRUE_RATE = {"stable": 0.10, "candidate": 0.20}


def register_one_version(home) -> None:
    """Version 1 of the model (alias champion) in a real MLflow store under `home`."""
    import onnx
    import pandas as pd

    from flightdeck.config import Settings
    from flightdeck.registry import Registry

    registry = Registry.from_settings(Settings(home=home))
    run_id = registry.log_run("bandit-test", {"seed": 1}, {}, {}, run_name="bandit-test")
    uri = registry.log_onnx_model(run_id, onnx.load_from_string(onnx_model(1)), pd.DataFrame(records(2)), [0.5, 0.5])
    registry.register(MODEL, uri, run_id, training_key="bandit-test")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, module_postgres_url):
    home = tmp_path_factory.mktemp("bandit-gateway")
    register_one_version(home)
    with gateway_process(home, module_postgres_url, AB, workers=1) as (base, _):
        yield base


def serve_units(client: GatewayClient, first_unit: int, n: int) -> list[str]:
    """Score one row for each of `n` new units; the variant each unit was assigned to."""
    row = records(1)[0]
    return [client.invocations([{**row, "annual_income": 20_000.0 + i}], endpoint="credit",
                               unit_id=f"unit-{i}")["variant"] for i in range(first_unit, first_unit + n)]


def wait_for_version(base: str, version: int, timeout: float = 10.0) -> None:
    """The (single) worker polls the route store; wait until it serves `version`."""
    eventually(lambda: httpx.get(f"{base}/admin/status", headers=AUTH).json()["route_version"] == version,
               timeout, what=f"the worker to load route version {version}")


def test_bandit_weights_reach_the_route_table_and_the_traffic(gateway):
    rng = np.random.default_rng(17)
    with GatewayClient(gateway, TOKEN) as client:
        assigned = serve_units(client, 0, 400)
        trials = {arm: assigned.count(arm) for arm in TRUE_RATE}
        assert min(trials.values()) > 120  # a 50/50 sticky split
        successes = {arm: int(rng.binomial(trials[arm], TRUE_RATE[arm])) for arm in TRUE_RATE}
        bandit = ThompsonBandit(list(TRUE_RATE), floor=0.1, min_units=100, top_two_beta=0.8, seed=5)
        decision = bandit.decide(successes, trials, client.routes()["document"]["endpoints"]["credit"]["weights"])
        assert decision.moved and decision.weights["candidate"] > 0.6

        before = client.routes()["version"]
        version = apply_weights(client, "credit", decision, author_comment="experiment credit-ab, day 1")
        assert version == before + 1
        table = client.routes()
        assert table["version"] == version
        written = table["document"]["endpoints"]["credit"]
        assert written["weights"] == pytest.approx(decision.weights, abs=1e-6)
        assert written["salt"] == "bandit-test" and written["policy"] == "ab"
        latest = client.history(limit=1)[0]
        assert latest["version"] == version and latest["author"] == "ops"
        assert latest["comment"].startswith(BANDIT_NAME) and "P(best)" in latest["comment"]
        assert "experiment credit-ab, day 1" in latest["comment"]
        assert latest["new_document"]["endpoints"]["credit"]["weights"] == written["weights"]

        # The same decision again changes nothing (no new version in the history).
        assert apply_weights(client, "credit", decision, author_comment="again") is None
        assert client.routes()["version"] == version

        # New units follow the new split (chi-square against the bandit's weights).
        wait_for_version(gateway, version)
        after = serve_units(client, 1000, 300)
        observed = [after.count(arm) for arm in TRUE_RATE]
        expected = [300 * decision.weights[arm] for arm in TRUE_RATE]
        assert chisquare(observed, f_exp=expected).pvalue > 0.001
        assert observed[1] > observed[0]


class RivalAfterRead(GatewayClient):
    """A client after whose next read of the route table another admin stores a table
    (flipping `allow_override` on endpoint credit), so its own write meets a 409."""

    def __init__(self, base: str) -> None:
        super().__init__(base, TOKEN)
        self.base, self.pending = base, True

    def routes(self) -> dict:
        stored = super().routes()
        if self.pending:
            self.pending = False
            with GatewayClient(self.base, TOKEN) as rival:
                rival.update_endpoint("credit", lambda spec: {**spec, "allow_override": not spec["allow_override"]},
                                      comment="rival edit")
        return stored


def test_the_bandit_and_a_concurrent_route_edit_both_land(gateway):
    with GatewayClient(gateway, TOKEN) as client:
        before = client.routes()
        override = before["document"]["endpoints"]["credit"]["allow_override"]
        shares = before["document"]["endpoints"]["credit"]["weights"]
        candidate = 0.3 if shares["candidate"] / sum(shares.values()) > 0.5 else 0.7
        decision = BanditDecision({"stable": 1 - candidate, "candidate": candidate},
                                  {"stable": 0.5, "candidate": 0.5}, True, "test")
        with RivalAfterRead(gateway) as racing:
            version = apply_weights(racing, "credit", decision, author_comment="raced")
        assert version == before["version"] + 2  # the rival's table, then the bandit's on top of it
        written = client.routes()["document"]["endpoints"]["credit"]
        assert written["weights"] == pytest.approx(decision.weights, abs=1e-6)
        assert written["allow_override"] is (not override)  # the rival's edit was not overwritten
        latest, rival = client.history(limit=2)
        assert latest["comment"].startswith(BANDIT_NAME) and rival["comment"] == "rival edit"
