"""Release policy floors: a run's Params cannot ask for less safety than the deployment allows."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import yaml

from flightdeck.config import get_settings
from flightdeck.delivery.plan import RolloutPlan
from flightdeck.delivery.policy import (
    DEFAULT_POLICY_FILE,
    PolicyFloorError,
    ReleasePolicy,
    load_policy,
    url_allowed,
)
from flightdeck.delivery.sources.base import MetricSourceError, WindowStart
from flightdeck.delivery.sources.prometheus import PrometheusSource, parse_query_response
from flightdeck.errors import ConfigError
from flightdeck.serverless.params import ServerlessPackageParams

BASE = {"strategy": "canary", "model_name": "m"}
K8S = {**BASE, "target": "kubernetes", "metrics_source": "prometheus", "prometheus_url": "http://prom.ops:9090",
       "target_options": {"namespace": "ml", "app": "credit", "gateway": "edge"}}


@pytest.fixture(scope="module")
def shipped() -> ReleasePolicy:
    return load_policy(DEFAULT_POLICY_FILE)


def policy(**values) -> ReleasePolicy:
    return ReleasePolicy.model_validate(values)


def refused(values: dict, rules: ReleasePolicy) -> PolicyFloorError:
    with pytest.raises(PolicyFloorError) as caught:
        RolloutPlan.parse(values, rules)
    return caught.value


def test_the_shipped_policy_accepts_the_default_plan_and_floors_approval_and_drills(shipped):
    assert RolloutPlan.parse(BASE, shipped).require_approval
    error = refused({**BASE, "require_approval": False}, shipped)
    assert error.param == "require_approval"
    assert str(DEFAULT_POLICY_FILE) in str(error) and "approval" in str(error)
    assert refused({**BASE, "drill_faults": {"error_rate": 0.5}}, shipped).param == "drill_faults"
    assert refused({**BASE, "metrics_source": "prometheus", "prometheus_url": "http://127.0.0.1:9090"},
                   shipped).param == "prometheus_url"


def test_a_permissive_policy_lets_approval_off_and_drills_through():
    plan = RolloutPlan.parse({**BASE, "require_approval": False, "drill_faults": {"latency_ms": 50}},
                             policy(require_approval=False, allow_drill_faults=True))
    assert not plan.require_approval and plan.drill_faults == {"latency_ms": 50}


@pytest.mark.parametrize(("gates", "param"), [
    ({"alpha": 0.2}, "gates.alpha"),
    ({"error_rate_margin": 0.5}, "gates.error_rate_margin"),
    ({"error_increase_tolerance": 2}, "gates.error_increase_tolerance"),
    ({"latency_margin_ms": 5000}, "gates.latency_margin_ms"),
    ({"psi_max": 9}, "gates.psi_max"),
    ({"shadow_disagreement_max": 0.9}, "gates.shadow_disagreement_max"),
    ({"min_requests": 2, "min_requests_hard_fail": 2}, "gates.min_requests"),
    ({"min_rows_for_distribution": 10}, "gates.min_rows_for_distribution"),
])
def test_gates_looser_than_the_policy_are_refused(shipped, gates, param):
    error = refused({**BASE, "gates": gates}, shipped)
    assert error.param == param


def test_gates_at_the_limit_pass(shipped):
    limits = shipped.gates
    plan = RolloutPlan.parse({**BASE, "gates": {"alpha": limits.alpha, "min_requests": limits.min_requests}},
                             shipped)
    assert plan.gates.alpha == limits.alpha


def test_metric_sources_are_an_allow_list():
    assert refused({**BASE, "metrics_source": "prometheus", "prometheus_url": "http://prom.ops:9090"},
                   policy(require_approval=False, metric_sources=["gateway"],
                          prometheus_urls=["http://prom.ops:9090"])).param == "metrics_source"


@pytest.mark.parametrize(("url", "allowed"), [
    ("http://prom.ops:9090", True),
    ("http://prom.ops:9090/", True),
    ("http://prom.ops:9090/prometheus", True),
    ("http://prom.ops:9091", False),
    ("https://prom.ops:9090", False),
    ("http://prom.ops.evil.example:9090", False),
    ("http://prom.ops:9090@evil.example", False),
    ("http://user:pw@prom.ops:9090", False),
    ("http://169.254.169.254/latest", False),
    ("file:///etc/passwd", False),
    ("http://loop:any", False),
])
def test_prometheus_urls_must_sit_under_an_allowed_base(url, allowed):
    assert url_allowed(url, ["http://prom.ops:9090", "http://loop"]) is allowed


def test_a_base_without_a_port_allows_any_port_on_that_host():
    assert url_allowed("http://127.0.0.1:40111", ["http://127.0.0.1"])
    assert not url_allowed("http://127.0.0.2:40111", ["http://127.0.0.1"])


def test_kubernetes_namespace_image_and_locked_options():
    rules = policy(prometheus_urls=["http://prom.ops:9090"],
                   kubernetes={"namespaces": ["ml"], "image_prefixes": ["registry.example.com/ml"]})
    assert RolloutPlan.parse(K8S, rules).target_options["namespace"] == "ml"
    good_image = {**K8S["target_options"], "image": "registry.example.com/ml/gateway:1"}
    assert RolloutPlan.parse({**K8S, "target_options": good_image}, rules)
    for options, param in [
        ({"namespace": "kube-system"}, "target_options.namespace"),
        ({"image": "registry.example.com/mlx/gateway:1"}, "target_options.image"),
        ({"image": "docker.io/evil/gateway:1"}, "target_options.image"),
        ({"env": {"MLFLOW_TRACKING_URI": "http://evil"}}, "target_options.env"),
        ({"mlflow_tracking_uri": "http://evil"}, "target_options.mlflow_tracking_uri"),
    ]:
        assert refused({**K8S, "target_options": {**K8S["target_options"], **options}}, rules).param == param


def test_the_role_arn_of_serverless_packaging_is_an_allow_list(tmp_path, monkeypatch):
    role = "arn:aws:iam::111122223333:role/flightdeck-lambda"
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"lambda_role_arns": [role]}))
    monkeypatch.setenv("FLIGHTDECK_RELEASE_POLICY_FILE", str(path))
    get_settings.cache_clear()
    try:
        assert ServerlessPackageParams.parse({"role_arn": role}).role_arn == role
        assert ServerlessPackageParams.parse({}).role_arn is None
        with pytest.raises(PolicyFloorError) as caught:
            ServerlessPackageParams.parse({"role_arn": "arn:aws:iam::999999999999:role/admin"})
        assert caught.value.param == "role_arn" and str(path) in str(caught.value)
    finally:
        get_settings.cache_clear()


def test_the_setting_points_at_the_policy_file_and_bad_files_are_named(tmp_path, monkeypatch):
    path = tmp_path / "policy.yaml"
    path.write_text("require_approval: false\nallow_drill_faults: yes\n")
    monkeypatch.setenv("FLIGHTDECK_RELEASE_POLICY_FILE", str(path))
    get_settings.cache_clear()
    try:
        assert load_policy().source == path and load_policy().allow_drill_faults
        path.write_text("require_aproval: false\n")
        with pytest.raises(ConfigError, match="require_aproval"):
            load_policy()
        path.unlink()
        with pytest.raises(ConfigError, match=str(path)):
            RolloutPlan.parse(BASE)
    finally:
        get_settings.cache_clear()


def test_prometheus_answers_reach_the_log_only_as_a_short_sanitised_reason():
    secret = "TOKEN-" + "x" * 300

    class NotPrometheus(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            body = f"<html>{secret}</html>".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), NotPrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        source = PrometheusSource(f"http://127.0.0.1:{server.server_port}", "default", timeout=30)
        with pytest.raises(MetricSourceError) as caught:
            source.windows(WindowStart(route_version=1, epoch=0.0))
    finally:
        server.shutdown()
        server.server_close()
    assert "TOKEN" not in str(caught.value) and "text/html" in str(caught.value)
    with pytest.raises(MetricSourceError) as refused_query:
        parse_query_response({"status": "error", "errorType": "bad_data", "error": "\x1b[31m" + secret})
    message = str(refused_query.value)
    assert "\x1b" not in message and secret not in message and len(message) < 400
