"""The AWS Lambda handler: score rows with the packaged ONNX model.

Two kinds of event:

* API Gateway HTTP API (payload format 2.0): the request body is an MLflow scoring body
  (`dataframe_split`, `dataframe_records`, `inputs`, `instances`), or Open Inference Protocol
  v2 tensors when the path ends in `/infer`. The answer is an HTTP response
  (`statusCode`, `headers`, a JSON `body`).
* Direct invocation (`aws lambda invoke`, Step Functions, the SDK): the event *is* the
  MLflow body. The answer is a dict: `{"statusCode": 200, "predictions": [...], ...}`.

A bad request never raises: it is answered with the gateway's status for it (400 not JSON
or no known format, 422 a missing / mistyped column, 413 too many rows) and
`{"error": ..., "field": ...}` naming the input at fault. Parsing and scoring are the
gateway's own code (`serving.payloads`, `runtime.InputPlan`, `runtime.score_feeds`), so a
row gets the same score here as from the gateway.

Cold start: nothing heavy is imported at module import; the model is loaded on the first
invocation and kept for the life of the execution environment, in an ONNX Runtime session
with one thread (a 128-1,769 MB function has at most one vCPU). pandas, pydantic and MLflow
are never imported.

Where the model comes from: `model.onnx` and `model.json` beside this package (the zip or
the image), or `FLIGHTDECK_MODEL_S3_URI` (`s3://bucket/key`, downloaded to /tmp once).
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

MODEL_FILE = "model.onnx"
METADATA_FILE = "model.json"
# The gateway's default (FLIGHTDECK_MAX_BATCH_ROWS); read from the same variable here
# because the settings object (pydantic-settings) is not part of the package.
DEFAULT_MAX_ROWS = 1000
JSON_HEADERS = {"content-type": "application/json"}

_MODEL: LoadedModel | None = None


class LoadedModel:
    """The model of this execution environment: session, input plan and identity."""

    def __init__(self, session: Any, name: str, version: str, load_seconds: float) -> None:
        from flightdeck.runtime import InputPlan

        self.session = session
        self.plan = InputPlan.of(session)
        self.name = name
        self.version = version
        self.load_seconds = load_seconds

    def score(self, columns: dict[str, list]) -> list[float]:
        from flightdeck.runtime import score_feeds

        return score_feeds(self.session, self.plan.feeds(columns)).tolist()


def _package_root() -> Path:
    return Path(os.environ.get("FLIGHTDECK_PACKAGE_ROOT") or Path(__file__).resolve().parents[2])


def _model_path() -> Path:
    uri = os.environ.get("FLIGHTDECK_MODEL_S3_URI")
    if not uri:
        return _package_root() / MODEL_FILE
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    local = Path("/tmp") / "flightdeck-model.onnx"
    if not local.exists():
        import boto3  # part of the Lambda Python runtime; only needed for this path

        boto3.client("s3").download_file(bucket, key, str(local))
    return local


def load_model() -> LoadedModel:
    """The model, loaded on first use and then kept for the execution environment's life."""
    global _MODEL
    if _MODEL is None:
        started = time.perf_counter()
        from flightdeck.runtime import load_session

        session = load_session(_model_path().read_bytes(), intra_op_threads=1)
        metadata_file = _package_root() / METADATA_FILE
        metadata = json.loads(metadata_file.read_text()) if metadata_file.is_file() else {}
        _MODEL = LoadedModel(session, str(metadata.get("model_name", "unknown")),
                             str(metadata.get("model_version", "unknown")), time.perf_counter() - started)
    return _MODEL


def _max_rows() -> int:
    try:
        return max(int(os.environ.get("FLIGHTDECK_MAX_BATCH_ROWS", DEFAULT_MAX_ROWS)), 1)
    except ValueError:
        return DEFAULT_MAX_ROWS


def is_http_event(event: Any) -> bool:
    """An API Gateway HTTP API (payload 2.0) event, as opposed to a direct invocation."""
    return isinstance(event, dict) and event.get("version") == "2.0" and "requestContext" in event


def _http_body(event: dict) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body)
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def _columns(payload: Any, oip: bool) -> dict[str, list]:
    from flightdeck.serving import payloads

    if oip:
        if not isinstance(payload, dict):
            from flightdeck.serving.errors import MalformedRequestError

            raise MalformedRequestError('body must be a JSON object {"inputs": [...]}.', field="inputs")
        return payloads.columns_from_oip_inputs(payload.get("inputs"), _max_rows())
    return payloads.columns_from_mlflow(payload, _max_rows())[0]


def predict(payload: Any, oip: bool = False) -> tuple[int, dict]:
    """(status, answer) for a decoded request body: scores, or the error naming the field."""
    from flightdeck import runtime
    from flightdeck.serving.errors import RequestError

    try:
        columns = _columns(payload, oip)
        model = load_model()
        scores = model.score(columns)
    except RequestError as exc:
        return exc.status, {"error": str(exc), "field": exc.field}
    except runtime.InvalidInputError as exc:  # the model's schema: 422, as the gateway answers
        return 422, {"error": str(exc), "field": exc.field}
    return 200, {"predictions": scores, "model_name": model.name, "model_version": model.version}


def handler(event: Any, context: Any = None) -> dict:
    """Lambda entry point (`flightdeck.serverless.handler.handler`)."""
    if is_http_event(event):
        from flightdeck.serving import payloads
        from flightdeck.serving.errors import RequestError

        path = str(event.get("rawPath") or "")
        try:
            payload = payloads.parse_json(_http_body(event))
        except RequestError as exc:
            status, answer = exc.status, {"error": str(exc), "field": exc.field}
        except (ValueError, TypeError):  # bad base64 or text encoding
            status, answer = 400, {"error": "body is not valid base64-encoded JSON. Fix: send a JSON "
                                             "document.", "field": "body"}
        else:
            status, answer = predict(payload, oip=path.rstrip("/").endswith("/infer"))
        return {"statusCode": status, "headers": JSON_HEADERS, "body": json.dumps(answer)}
    status, answer = predict(event)
    return {"statusCode": status, **answer}
