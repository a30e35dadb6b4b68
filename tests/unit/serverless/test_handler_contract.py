"""One contract, three handlers: the Lambda, Cloud Functions and Azure Functions adapters of the
serverless core, each driven in process through its platform's own request objects (an API
Gateway v2 event; the Functions Framework's Flask app on `main.py`; `azure.functions`
HttpRequest / HttpResponse through the FunctionApp's registered routes), must give the
gateway's scores and the gateway's 4xx answers naming the field."""

from __future__ import annotations

import json

import pytest

from flightdeck.runtime import input_columns, load_session
from flightdeck.serverless import core
from flightdeck.serverless import handler as lambda_handler
from flightdeck.serverless.package import GCF_MAIN
from flightdeck.serverless.verify import gateway_scores, http_event, split_body
from tests.support.models import onnx_model, records


@pytest.fixture
def packaged(tmp_path, monkeypatch):
    (tmp_path / "model.onnx").write_bytes(onnx_model(1))
    (tmp_path / "model.json").write_text(json.dumps({"model_name": "credit", "model_version": "3"}))
    (tmp_path / "main.py").write_text(GCF_MAIN)
    monkeypatch.setenv("FLIGHTDECK_PACKAGE_ROOT", str(tmp_path))
    monkeypatch.setattr(core, "_MODEL", None)
    return tmp_path


def lambda_call(root, body: str, path: str) -> tuple[int, dict]:
    answer = lambda_handler.handler(http_event(body, path))
    assert answer["headers"]["content-type"] == "application/json"
    return answer["statusCode"], json.loads(answer["body"])


def gcf_call(root, body: str, path: str) -> tuple[int, dict]:
    import functions_framework

    client = functions_framework.create_app(target="score", source=str(root / "main.py")).test_client()
    answer = client.post(path, data=body, content_type="application/json")
    assert answer.headers["content-type"] == "application/json"
    return answer.status_code, answer.get_json()


def azure_call(root, body: str, path: str) -> tuple[int, dict]:
    import azure.functions as func

    from flightdeck.serverless.azure_handler import build_app

    functions = {f.get_function_name(): f.get_user_function() for f in build_app().get_functions()}
    request = func.HttpRequest("POST", f"https://app.azurewebsites.net{path}", body=body.encode(),
                               headers={"content-type": "application/json"})
    answer = functions[f"score_{path.rstrip('/').rpartition('/')[2]}"](request)
    assert isinstance(answer, func.HttpResponse)
    assert (answer.mimetype, answer.headers["content-type"]) == ("application/json", "application/json")
    return answer.status_code, json.loads(answer.get_body())


CALLS = {"lambda": lambda_call, "gcf": gcf_call, "azure": azure_call}


@pytest.fixture(params=sorted(CALLS))
def call(request, packaged):
    return lambda body, path="/invocations": CALLS[request.param](packaged, body, path)


def oip_body(rows: list[dict]) -> dict:
    columns = input_columns(load_session(onnx_model(1)))
    tensors = []
    for name in columns:
        text = isinstance(rows[0][name], str)
        tensors.append({"name": name, "datatype": "BYTES" if text else "FP64", "shape": [len(rows), 1],
                        "data": [r[name] for r in rows]})
    return {"inputs": tensors}


def test_good_bodies_score_like_the_gateway(call):
    rows = records(6)
    expected = gateway_scores(onnx_model(1), split_body(rows))
    for body, path in ((split_body(rows), "/invocations"), ({"dataframe_records": rows}, "/invocations"),
                       (oip_body(rows), "/infer")):
        status, answer = call(json.dumps(body), path)
        assert status == 200, answer
        assert answer["predictions"] == expected
        assert (answer["model_name"], answer["model_version"]) == ("credit", "3")


@pytest.mark.parametrize(("body", "status", "field"), [
    ("{nope", 400, None),
    (json.dumps({"rows": []}), 400, None),
    (json.dumps({"dataframe_records": [{"age": 1}]}), 422, "annual_income"),
    (json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}), 422, "dataframe_split.data[0]"),
])
def test_bad_bodies_get_the_gateway_status_naming_the_field(call, body, status, field):
    got, answer = call(body)
    assert got == status, answer
    assert answer["error"]
    if field:
        assert answer["field"] == field


def test_too_many_rows_is_a_413(call, monkeypatch):
    monkeypatch.setenv("FLIGHTDECK_MAX_BATCH_ROWS", "2")
    status, answer = call(json.dumps({"dataframe_records": records(3)}))
    assert status == 413, answer
    assert "2" in answer["error"]


def test_azure_app_registers_post_routes_behind_a_function_key():
    import azure.functions as func

    from flightdeck.serverless.azure_handler import build_app

    app = build_app()
    assert app.auth_level == func.AuthLevel.FUNCTION
    bindings = {f.get_function_name(): json.loads(f.get_function_json())["bindings"] for f in app.get_functions()}
    routes = {name: next(b for b in binding if b["type"] == "httpTrigger") for name, binding in bindings.items()}
    assert {name: (r["route"], r["methods"], r["authLevel"]) for name, r in routes.items()} == {
        "score_invocations": ("invocations", ["POST"], "FUNCTION"),
        "score_infer": ("infer", ["POST"], "FUNCTION")}
