"""The scoring endpoints (MLflow `/invocations`, OIP v2 `infer`), framework-free.

Each handler takes the gateway, the raw body and the headers and returns a `Reply`. The
FastAPI app declares the same routes (for its OpenAPI document and for callers that mount
it directly), and `ScoringFastPath` answers them as a plain ASGI layer in front of it:
on single-row requests FastAPI's routing and dependency machinery cost about as much as
scoring, and the gateway's throughput target leaves no room for that.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from flightdeck.config import Settings
from flightdeck.serving import payloads
from flightdeck.serving.errors import (
    MalformedRequestError,
    OverrideNotAllowedError,
    PayloadTooLargeError,
    RequestError,
)
from flightdeck.serving.gateway import Gateway, Prediction

log = logging.getLogger(__name__)

UNIT_HEADER = "x-unit-id"
VARIANT_HEADER = "x-flightdeck-variant"
REQUEST_ID_HEADER = "x-request-id"
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]


def json_reply(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, orjson.dumps(content, option=_JSON_OPTIONS), headers or {})


def error_reply(exc: RequestError) -> Reply:
    return json_reply({"error": str(exc), "error_code": type(exc).__name__, "field": exc.field}, exc.status)


def _answer_headers(prediction: Prediction) -> dict[str, str]:
    return {"x-flightdeck-variant": prediction.variant, "x-flightdeck-model-version": prediction.model_version,
            "x-flightdeck-route-version": str(prediction.route_version), REQUEST_ID_HEADER: prediction.request_id}


def text_param(value: Any, name: str) -> str | None:
    """A unit id / variant / request id parameter as text; 400 for other JSON types."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedRequestError(f"`{name}` must be a string or an integer.", field=name)
    return str(value)


MAX_ID_CHARS = 128


def checked_id(value: str | None, name: str) -> str | None:
    """A caller-chosen id (unit id, request id) fit for the prediction log, or None when absent.

    Ids are stored in indexed text columns: NUL or another control character, or a very long
    id, would make the database refuse the row. Such ids are the caller's error (400)."""
    if not value:
        return None
    if len(value) > MAX_ID_CHARS or not value.isprintable():
        raise MalformedRequestError(
            f"`{name}` must be 1 to {MAX_ID_CHARS} printable characters (got {len(value)} characters"
            f"{'' if value.isprintable() else ', some not printable'}). Fix: send a shorter id without "
            "control characters.", field=name)
    return value


def token_caller(settings: Settings, authorization: str | None) -> str | None:
    """The admin whose token an `Authorization: Bearer <token>` value carries, else None.

    Every token is compared in constant time, so the reply time tells nothing about them."""
    scheme, _, offered = (authorization or "").partition(" ")
    offered = offered.strip()
    if scheme.lower() != "bearer" or not offered:
        return None
    caller = None
    for name, token in settings.admin_tokens.items():
        if hmac.compare_digest(offered.encode(), token.get_secret_value().encode()):
            caller = name
    return caller


def allowed_override(settings: Settings, authorization: str | None, override: str | None, field: str,
                     version: str | None = None) -> str | None:
    """`override` if the caller may force a variant (or pin a model version): admins only.

    A forced request skips the endpoint's policy, so it is no evidence about that policy: it
    is flagged in the prediction log and left out of the running sums the release gates read
    and of experiment analysis. Anyone else forcing a variant gets 403."""
    if (override is not None or version is not None) and token_caller(settings, authorization) is None:
        what = f"variant {override!r}" if override is not None else f"model version {version!r}"
        raise OverrideNotAllowedError(
            f"forcing {what} needs an admin token (`Authorization: Bearer <token>`, one of "
            f"FLIGHTDECK_ADMIN_TOKENS). Fix: drop `{field}` to be routed by the endpoint's policy, or "
            "send an admin token.", field=field)
    return override


def id_param(headers: Mapping[str, str], header: str, value: Any, name: str) -> str | None:
    """The id from `header` if sent, else from the body parameter `name`; checked either way."""
    sent = headers.get(header)
    if sent:
        return checked_id(sent, header)
    return checked_id(text_param(value, name), name)


async def mlflow_invocations(gateway: Gateway, settings: Settings, endpoint: str | None, body: bytes,
                             headers: Mapping[str, str]) -> Reply:
    """MLflow scoring-server body in, {"predictions": [...], "variant", "model_version", ...} out."""
    columns, params = payloads.columns_from_mlflow(payloads.parse_json(body), settings.max_batch_rows)
    override, field = headers.get(VARIANT_HEADER), "X-Flightdeck-Variant"
    if not override:
        override, field = text_param(params.get("variant"), "params.variant"), "params.variant"
    prediction = await gateway.predict(
        endpoint or gateway.default_endpoint, columns,
        unit_id=id_param(headers, UNIT_HEADER, params.get("unit_id"), "params.unit_id"),
        override=allowed_override(settings, headers.get("authorization"), override, field),
        client_request_id=checked_id(headers.get(REQUEST_ID_HEADER), REQUEST_ID_HEADER))
    answer = {"predictions": prediction.scores, "variant": prediction.variant,
              "model_version": prediction.model_version, "route_version": prediction.route_version,
              "request_id": prediction.request_id, "fallback": prediction.fallback, "cached": prediction.cached}
    if prediction.client_request_id is not None:
        answer["client_request_id"] = prediction.client_request_id
    if prediction.row_variants is not None:
        answer["row_variants"] = prediction.row_variants
    return json_reply(answer, headers=_answer_headers(prediction))


async def oip_infer(gateway: Gateway, settings: Settings, name: str, model_version: str | None, body: bytes,
                    headers: Mapping[str, str]) -> Reply:
    """Open Inference Protocol v2 inference: one input tensor per feature, shape [n] or [n, 1], as
    JSON `data` or binary (the binary tensor data extension); outputs as the request asks."""
    payload, binary = payloads.split_oip_body(body, headers.get(payloads.HEADER_LENGTH))
    if not isinstance(payload, dict):
        raise MalformedRequestError('body must be an object {"inputs": [...]}.')
    columns = payloads.columns_from_oip_inputs(payload.get("inputs"), settings.max_batch_rows, binary)
    binary_outputs = payloads.oip_binary_outputs(payload, ("probabilities",))
    parameters = payload.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise MalformedRequestError("`parameters` must be an object.", field="parameters")
    override, field = headers.get(VARIANT_HEADER), "X-Flightdeck-Variant"
    if not override:
        override, field = text_param(parameters.get("variant"), "parameters.variant"), "parameters.variant"
    if override is None and model_version is not None:
        field = "version"
    prediction = await gateway.predict(
        name, columns, version=model_version,
        unit_id=id_param(headers, UNIT_HEADER, parameters.get("unit_id"), "parameters.unit_id"),
        override=allowed_override(settings, headers.get("authorization"), override, field, model_version),
        client_request_id=checked_id(text_param(payload.get("id"), "id"), "id")
        or checked_id(headers.get(REQUEST_ID_HEADER), REQUEST_ID_HEADER))
    scores = prediction.scores
    # OIP echoes the caller's id; the gateway's own request id (what outcomes join on) is a parameter.
    answer = {"model_name": name, "model_version": prediction.model_version,
              "id": prediction.client_request_id or prediction.request_id,
              "parameters": {"variant": prediction.variant, "route_version": prediction.route_version,
                             "fallback": prediction.fallback, "cached": prediction.cached,
                             "request_id": prediction.request_id},
              "outputs": [{"name": "probabilities", "datatype": "FP64", "shape": [len(scores)], "data": scores}]}
    content, extra = payloads.oip_reply_body(answer, binary_outputs)
    return Reply(200, content, {**_answer_headers(prediction), **extra})


def check_size(declared: str | None, received: int, limit: int) -> None:
    """PayloadTooLargeError (413) when the declared or received body exceeds `limit` bytes."""
    size = int(declared) if declared is not None and declared.isdigit() else received
    if max(size, received) > limit:
        raise PayloadTooLargeError(f"body of {max(size, received)} bytes exceeds {limit}. "
                                   "Fix: send fewer rows per request.")


_ROUTES = [
    (re.compile(r"^/invocations$"), "mlflow"),
    (re.compile(r"^/endpoints/([^/]+)/invocations$"), "mlflow"),
    (re.compile(r"^/v2/models/([^/]+)/infer$"), "oip"),
    (re.compile(r"^/v2/models/([^/]+)/versions/([^/]+)/infer$"), "oip"),
]


class ScoringFastPath:
    """ASGI layer answering POSTs to the scoring routes; everything else goes to `app`."""

    def __init__(self, app, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            for pattern, protocol in _ROUTES:
                match = pattern.match(scope["path"])
                if match:
                    reply = await self._score(protocol, match.groups(), scope, receive)
                    await _send(send, reply)
                    return
        if scope["type"] == "http":
            await self._limited(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _limited(self, scope, receive, send) -> None:
        """Pass a request to the app with its body capped at `max_body_bytes`.

        Every route is capped before any of its body is read, the admin API included: its
        token is checked only once the body is parsed, so without the cap anyone could make a
        worker buffer gigabytes. A declared size over the limit is refused at once; a streamed
        body is cut off where it passes the limit and the app sees the client leave."""
        limit = self.settings.max_body_bytes
        declared = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"content-length"), None)
        try:
            check_size(declared, 0, limit)
        except PayloadTooLargeError as exc:
            await _send(send, _closing(error_reply(exc)))
            return
        received, refused = 0, False

        async def limited_receive():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                try:
                    check_size(None, received, limit)
                except PayloadTooLargeError as exc:
                    refused = True
                    await _send(send, _closing(error_reply(exc)))
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message) -> None:
            if not refused:  # the 413 went out: whatever the app answers is dropped
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise

    async def _score(self, protocol: str, groups: tuple, scope, receive) -> Reply:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        limit = self.settings.max_body_bytes
        try:
            check_size(headers.get("content-length"), 0, limit)
            body = await _read_body(receive, limit)
            gateway: Gateway = self.app.state.gateway
            if protocol == "mlflow":
                return await mlflow_invocations(gateway, self.settings, groups[0] if groups else None, body, headers)
            return await oip_infer(gateway, self.settings, groups[0], groups[1] if len(groups) > 1 else None,
                                   body, headers)
        except PayloadTooLargeError as exc:
            return _closing(error_reply(exc))
        except RequestError as exc:
            return error_reply(exc)
        except Exception:
            log.exception("scoring request to %s failed", scope["path"])
            return json_reply({"error": "internal error; the gateway log has the details"}, 500)


def _closing(reply: Reply) -> Reply:
    """`reply` with `connection: close`: the unread rest of the body must not be parsed as a request."""
    return Reply(reply.status, reply.body, {**reply.headers, "connection": "close"})


async def _read_body(receive, limit: int) -> bytes:
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise MalformedRequestError("the client went away before sending the whole body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        check_size(None, size, limit)
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_SAFE_HEADER_VALUE = re.compile(r"^[\x21-\x7e]{1,200}$")


async def _send(send, reply: Reply) -> None:
    content_type = reply.headers.get("content-type", "application/json")  # OIP binary answers: octet-stream
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(reply.body)).encode())]
    # Values may echo the caller's request id: only plain visible ASCII goes into a header.
    headers += [(k.encode(), v.encode()) for k, v in reply.headers.items()
                if k != "content-type" and _SAFE_HEADER_VALUE.match(v)]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})
