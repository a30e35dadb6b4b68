"""The AWS Lambda handler: score rows with the packaged ONNX model.

Two kinds of event:

* API Gateway HTTP API (payload format 2.0): the request body is an MLflow scoring body, or
  Open Inference Protocol v2 tensors when the path ends in `/infer`. The answer is an HTTP
  response (`statusCode`, `headers`, a JSON `body`).
* Direct invocation (`aws lambda invoke`, Step Functions, the SDK): the event *is* the
  MLflow body. The answer is a dict: `{"statusCode": 200, "predictions": [...], ...}`.

Parsing, scoring and the error contract (a 4xx naming the field, never a raise) are the
shared core's (`serverless.core`), which the Cloud Functions and Azure handlers use as well.
The model comes from the package (or `FLIGHTDECK_MODEL_S3_URI`, downloaded to /tmp once).
"""

from __future__ import annotations

import base64
from typing import Any

from flightdeck.serverless import core
from flightdeck.serverless.core import JSON_HEADERS, LoadedModel, load_model, predict

__all__ = ["JSON_HEADERS", "LoadedModel", "handler", "is_http_event", "load_model", "predict"]


def is_http_event(event: Any) -> bool:
    """An API Gateway HTTP API (payload 2.0) event, as opposed to a direct invocation."""
    return isinstance(event, dict) and event.get("version") == "2.0" and "requestContext" in event


def _http_body(event: dict) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body)
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def handler(event: Any, context: Any = None) -> dict:
    """Lambda entry point (`flightdeck.serverless.handler.handler`)."""
    if is_http_event(event):
        try:
            body = _http_body(event)
        except (ValueError, TypeError):  # bad base64 or text encoding
            status, answer = 400, {"error": "body is not valid base64-encoded JSON. Fix: send a JSON "
                                            "document.", "field": "body"}
        else:
            status, answer = core.answer(body, str(event.get("rawPath") or ""))
        return {"statusCode": status, "headers": JSON_HEADERS, "body": core.encode(answer)}
    status, answer = predict(event)
    return {"statusCode": status, **answer}
