"""The one request/response core of every serverless handler (Lambda, Cloud Functions, Azure).

A handler only translates its platform's request into (body bytes, path) and the core's
(status, answer) back into its platform's response. The core:

* parses the body with the gateway's own code (`serving.payloads`): an MLflow scoring body
  (`dataframe_split`, `dataframe_records`, `inputs`, `instances`), or Open Inference Protocol
  v2 tensors when the path ends in `/infer`;
* scores with the gateway's input plan and ONNX Runtime call (`runtime.InputPlan`,
  `runtime.score_feeds`), so a row gets the same score everywhere;
* answers a bad request with the gateway's status for it (400 not JSON or no known format,
  422 a missing / mistyped column, 413 too many rows) and `{"error": ..., "field": ...}`
  naming the input at fault; it never raises for a request.

Cold start: nothing heavy is imported at module import; the model is loaded on the first
request and kept for the life of the execution environment (one ONNX Runtime thread: the
smallest instances of all three platforms have at most one vCPU). pandas, pydantic and MLflow
are never imported.

Where the model comes from: `model.onnx` and `model.json` at the package root (beside the
`flightdeck` folder, or `FLIGHTDECK_PACKAGE_ROOT`), or `FLIGHTDECK_MODEL_S3_URI` on Lambda.
"""

from __future__ import annotations

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


def package_root() -> Path:
    """The folder holding `model.onnx`: FLIGHTDECK_PACKAGE_ROOT, else the package's root."""
    return Path(os.environ.get("FLIGHTDECK_PACKAGE_ROOT") or Path(__file__).resolve().parents[2])


def _model_path() -> Path:
    uri = os.environ.get("FLIGHTDECK_MODEL_S3_URI")
    if not uri:
        return package_root() / MODEL_FILE
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
        metadata_file = package_root() / METADATA_FILE
        metadata = json.loads(metadata_file.read_text()) if metadata_file.is_file() else {}
        _MODEL = LoadedModel(session, str(metadata.get("model_name", "unknown")),
                             str(metadata.get("model_version", "unknown")), time.perf_counter() - started)
    return _MODEL


def forget_model() -> None:
    """Drop the loaded model (tests that point FLIGHTDECK_PACKAGE_ROOT somewhere else)."""
    global _MODEL
    _MODEL = None


def max_rows() -> int:
    try:
        return max(int(os.environ.get("FLIGHTDECK_MAX_BATCH_ROWS", DEFAULT_MAX_ROWS)), 1)
    except ValueError:
        return DEFAULT_MAX_ROWS


def _columns(payload: Any, oip: bool) -> dict[str, list]:
    from flightdeck.serving import payloads

    if oip:
        if not isinstance(payload, dict):
            from flightdeck.serving.errors import MalformedRequestError

            raise MalformedRequestError('body must be a JSON object {"inputs": [...]}.', field="inputs")
        return payloads.columns_from_oip_inputs(payload.get("inputs"), max_rows())
    return payloads.columns_from_mlflow(payload, max_rows())[0]


def is_oip_path(path: str) -> bool:
    """Open Inference Protocol v2 tensors are posted to a path ending in `/infer`."""
    return str(path or "").rstrip("/").endswith("/infer")


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


def answer(body: bytes, path: str = "/invocations") -> tuple[int, dict]:
    """(status, answer) for an HTTP request's raw body and path: what every handler returns."""
    from flightdeck.serving import payloads
    from flightdeck.serving.errors import RequestError

    try:
        payload = payloads.parse_json(body)
    except RequestError as exc:
        return exc.status, {"error": str(exc), "field": exc.field}
    return predict(payload, oip=is_oip_path(path))


def encode(answer_: dict) -> str:
    """The JSON text of an answer, as every handler sends it."""
    return json.dumps(answer_)
