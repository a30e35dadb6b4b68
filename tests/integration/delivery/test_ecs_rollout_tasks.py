"""The promotion tasks on an ECS target (blue-green), run in order against a moto server over
loopback HTTP and a real MLflow registry, each task building its target afresh from the XComs
as Airflow runs each in its own process.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import yaml

from flightdeck.airflow import release
from flightdeck.registry import CHALLENGER, CHAMPION, PREVIOUS, Registry
from tests.integration.delivery.test_ecs_target import BLUE, CLUSTER, GREEN, World
from tests.integration.delivery.test_lambda_rollout_tasks import XComs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MODEL = "credit"


@pytest.fixture
def world(moto_server, tmp_path, monkeypatch) -> World:
    """Blue serves model v3; a release policy that allows this world's cluster, services and rule."""
    world = World(moto_server)
    policy = {"require_approval": False, "metric_sources": ["prometheus"], "prometheus_urls": ["http://127.0.0.1"],
              "ecs": {"clusters": [CLUSTER], "services": [BLUE, GREEN], "listener_rule_arns": [world.rule_arn]}}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    monkeypatch.setenv("FLIGHTDECK_RELEASE_POLICY_FILE", str(path))
    from flightdeck.config import get_settings

    get_settings.cache_clear()
    yield world
    get_settings.cache_clear()


@pytest.fixture
def registry(flightdeck_home) -> Registry:
    """Model `credit`: versions 1-4, v3 champion, v4 challenger."""
    registry = Registry.from_settings()
    registry.client.create_registered_model(MODEL)
    for _ in range(4):
        registry.client.create_model_version(MODEL, (flightdeck_home / "model").as_uri())
    registry.client.set_registered_model_alias(MODEL, CHAMPION, "3")
    registry.client.set_registered_model_alias(MODEL, CHALLENGER, "4")
    return registry


def test_blue_green_on_ecs_test_share_cut_over_then_rollback(world, registry):
    params = {"model_name": MODEL, "model_ref": CHALLENGER, "target": "ecs", "metrics_source": "prometheus",
              "prometheus_url": "http://127.0.0.1:9090", "require_approval": False,
              "target_options": {"cluster": CLUSTER, "blue_service": BLUE, "green_service": GREEN,
                                 "listener_rule_arn": world.rule_arn, "region": "us-east-1", "test_percent": 10}}
    xcoms = XComs()
    rollout = xcoms.push("resolve_rollout", release.resolve_rollout.function(
        "blue_green", params=params, dag_run=SimpleNamespace(conf={}, run_id="manual__ecs")))
    assert rollout["target_state"]["baseline_colour"] == "blue"

    deployed = release.deploy.function(rollout)
    assert deployed["state"]["candidate_percent"] == 0 and world.served_version(GREEN) == "4"
    step = release.set_weight.function(rollout, 1)
    assert step["variants"] == ["v3", "v4"] and world.weights() == {"blue": 90, "green": 10}
    assert release.set_weight.function(rollout, 2)["in_plan"] is False  # blue-green has one step
    switched = release.promote.function(rollout)
    assert world.weights() == {"blue": 0, "green": 100} and switched["aliases"][CHAMPION] == "4"

    undone = release.rollback.function(run_id="manual__ecs", ti=xcoms)  # e.g. the post-switch bake failed
    assert world.weights() == {"blue": 100, "green": 0} and undone["left_alone"] == []
    assert undone["state"]["baseline"] == "3" and registry.aliases(MODEL)[CHAMPION] == "3"
    assert PREVIOUS not in registry.aliases(MODEL)
