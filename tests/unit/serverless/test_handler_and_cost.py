"""The Lambda handler in process (events, bad bodies), package limits, the cost model, and
the CloudWatch latency bound."""

from __future__ import annotations

import json

import pytest

from flightdeck.delivery.plan import RolloutPlan, RolloutPlanError
from flightdeck.delivery.sources.cloudwatch import period_sumsq
from flightdeck.serverless import core
from flightdeck.serverless import handler as lambda_handler
from flightdeck.serverless.cost import Workload, break_even, container_monthly, lambda_monthly
from flightdeck.serverless.package import LAMBDA_PINS, PackageTooLargeError, check_limits
from flightdeck.serverless.verify import gateway_scores, http_event, split_body
from tests.support.models import REPO, onnx_model, records


@pytest.fixture
def packaged(tmp_path, monkeypatch):
    (tmp_path / "model.onnx").write_bytes(onnx_model(1))
    (tmp_path / "model.json").write_text(json.dumps({"model_name": "credit", "model_version": "3"}))
    monkeypatch.setenv("FLIGHTDECK_PACKAGE_ROOT", str(tmp_path))
    monkeypatch.setattr(core, "_MODEL", None)
    return tmp_path


def test_v2_and_direct_events_score_like_the_gateway(packaged):
    rows = records(8)
    expected = gateway_scores(onnx_model(1), split_body(rows))
    answer = lambda_handler.handler(http_event(split_body(rows)))
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"])["predictions"] == expected
    direct = lambda_handler.handler({"dataframe_records": rows})
    assert (direct["statusCode"], direct["predictions"], direct["model_version"]) == (200, expected, "3")


@pytest.mark.parametrize(("event", "status", "field"), [
    (http_event("{nope"), 400, None),
    (http_event({"rows": []}), 400, None),
    ({"dataframe_records": [{"age": 1}]}, 422, "annual_income"),
    ({"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}, 422, "dataframe_split.data[0]"),
])
def test_bad_bodies_get_a_4xx_naming_the_field(packaged, event, status, field):
    answer = lambda_handler.handler(event)
    body = json.loads(answer["body"]) if "body" in answer else answer
    assert answer["statusCode"] == status
    assert "error" in body
    if field:
        assert body["field"] == field


def test_model_is_loaded_once_per_environment(packaged):
    lambda_handler.handler({"dataframe_records": records(1)})
    first = lambda_handler.load_model()
    lambda_handler.handler({"dataframe_records": records(1)})
    assert lambda_handler.load_model() is first


def test_package_limits_name_the_measured_size():
    check_limits(50 * 2**20, 250 * 2**20, "p.zip")
    with pytest.raises(PackageTooLargeError, match=r"p.zip is 51.0 MB zipped"):
        check_limits(51 * 2**20, 1, "p.zip")
    with pytest.raises(PackageTooLargeError, match=r"300.0 MB unzipped"):
        check_limits(1, 300 * 2**20, "p.zip")


def test_orjson_pin_follows_requirements():
    pins = dict(line.split("==") for line in (REPO / "requirements.txt").read_text().split()
                if line.startswith("orjson=="))
    assert LAMBDA_PINS["orjson"] == pins["orjson"]


def test_break_even_is_where_both_costs_meet():
    work = Workload(latency_ms=2.0)
    even = break_even(work)
    assert even is not None
    assert lambda_monthly(even, work) == pytest.approx(container_monthly(even, work), rel=1e-9)
    assert lambda_monthly(even / 2, work) < container_monthly(even / 2, work)
    assert lambda_monthly(even * 2, work) > container_monthly(even * 2, work)
    with pytest.raises(Exception, match="latency_ms"):
        Workload(latency_ms=0)


def test_latency_bound_is_exact_for_constant_values_and_never_below_the_truth():
    assert period_sumsq(30.0, 3, 10.0, 10.0) == pytest.approx(300.0)
    values = [1.0, 2.0, 9.0]
    assert period_sumsq(sum(values), 3, 1.0, 9.0) >= sum(v * v for v in values)


def test_lambda_target_needs_cloudwatch_and_the_alias():
    base = {"strategy": "canary", "model_name": "m", "target": "lambda"}
    with pytest.raises(RolloutPlanError, match="CloudWatch"):
        RolloutPlan.parse(base)
    with pytest.raises(RolloutPlanError, match="function_name"):
        RolloutPlan.parse({**base, "metrics_source": "cloudwatch"})
    plan = RolloutPlan.parse({**base, "metrics_source": "cloudwatch",
                              "target_options": {"function_name": "f", "alias": "live"}})
    assert plan.target == "lambda"
