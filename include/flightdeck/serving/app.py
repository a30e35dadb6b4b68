"""The FastAPI application: MLflow `/invocations`, Open Inference Protocol v2 REST, a WebSocket
stream, Prometheus `/metrics`, running sums for the gates, and the token-protected admin API.

`create_app()` is the uvicorn factory (`flightdeck serve` runs it in N worker processes).
Hot paths read the raw body and answer with orjson: pydantic models are only used by the
admin API, where readability matters more than microseconds.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, NoReturn

import orjson
from fastapi import Depends, FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from flightdeck.config import Settings, get_settings
from flightdeck.serving import payloads
from flightdeck.serving.errors import MalformedRequestError, RequestError
from flightdeck.serving.gateway import Gateway
from flightdeck.serving.metrics import exposition
from flightdeck.serving.predlog import Outcome, OutcomeStore
from flightdeck.serving.scoring import (
    UNIT_HEADER,
    VARIANT_HEADER,
    ScoringFastPath,
    allowed_override,
    check_size,
    checked_id,
    error_reply,
    json_reply,
    mlflow_invocations,
    oip_infer,
    text_param,
    token_caller,
)
from flightdeck.serving.stats import StatsStore

log = logging.getLogger(__name__)



def _json(content: Any, status: int = 200) -> Response:
    reply = json_reply(content, status)
    return Response(reply.body, reply.status, media_type="application/json")


_bearer = HTTPBearer(auto_error=False)


def admin_caller(request: Request,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    """The name of the admin calling: 401 without a bearer token, 403 with an unknown one."""
    if credentials is None:
        _refuse(401, "admin API needs `Authorization: Bearer <token>`.")
    caller = token_caller(request.app.state.settings, f"Bearer {credentials.credentials}")
    if caller is None:
        _refuse(403, "token not recognised. Fix: use a token from FLIGHTDECK_ADMIN_TOKENS.")
    return caller


Admin = Annotated[str, Depends(admin_caller)]


class RouteReplace(BaseModel):
    document: dict[str, Any] = Field(..., description="The whole route table (see flightdeck.serving.routes).")
    expected_version: int | None = Field(None, ge=0, description="Refuse (409) unless this is the current version.")
    comment: str | None = Field(None, max_length=2000)
    wait: bool = Field(False, description="Answer only once every live worker serves the new version "
                                          "(504 naming the workers that do not, after wait_timeout_s).")
    wait_timeout_s: float = Field(10.0, gt=0, le=300)


class OutcomeIn(BaseModel):
    request_id: str | None = None
    unit_id: str | None = None
    label: float
    observed_at: datetime | None = None


class OutcomesIn(BaseModel):
    outcomes: list[OutcomeIn] = Field(..., min_length=1, max_length=100_000)


def create_app(settings: Settings | None = None, gateway: Gateway | None = None) -> ScoringFastPath:
    """The gateway application; builds its Gateway from the settings unless one is given.

    Returns the FastAPI app behind the ASGI layer that answers the scoring routes.
    """
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        nonlocal gateway
        if gateway is None:
            from flightdeck.registry import Registry
            from flightdeck.serving.models import ModelPool

            gateway = Gateway(settings, ModelPool(Registry.from_settings(settings)))
        app.state.gateway = gateway
        app.state.settings = settings
        await gateway.start()
        grpc_server = None
        if settings.grpc_port:
            from flightdeck.serving.grpc_service import start_grpc_server

            grpc_server = await start_grpc_server(gateway, settings.gateway_host, settings.grpc_port)
        try:
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop(2)
            await gateway.stop()

    app = FastAPI(title="flightdeck gateway", version=_package_version(), lifespan=lifespan)

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, exc: RequestError) -> Response:
        reply = error_reply(exc)
        return Response(reply.body, reply.status, media_type="application/json")

    def gw(request: Request) -> Gateway:
        return request.app.state.gateway

    # ---- scoring (answered by ScoringFastPath; declared here for the OpenAPI document) -------
    async def _reply(handler, request: Request, *args) -> Response:
        body = await request.body()
        try:
            check_size(request.headers.get("content-length"), len(body), settings.max_body_bytes)
            reply = await handler(gw(request), settings, *args, body, request.headers)
        except RequestError as exc:
            reply = error_reply(exc)
        return Response(reply.body, reply.status, reply.headers, media_type="application/json")

    @app.post("/invocations", tags=["mlflow"])
    async def invocations(request: Request) -> Response:
        """Score rows on the default endpoint; body as for `mlflow models serve`."""
        return await _reply(mlflow_invocations, request, None)

    @app.post("/endpoints/{endpoint}/invocations", tags=["mlflow"])
    async def endpoint_invocations(endpoint: str, request: Request) -> Response:
        """Score rows on a named endpoint; body as for `mlflow models serve`."""
        return await _reply(mlflow_invocations, request, endpoint)

    @app.get("/ping", tags=["mlflow"])
    @app.get("/health", tags=["mlflow"])
    async def ping(request: Request) -> Response:
        ready = gw(request).is_ready()
        return _json({"status": "ok" if ready else "loading"}, 200 if ready else 503)

    # ---- Open Inference Protocol v2 --------------------------------------------------------
    @app.get("/v2", tags=["oip-v2"])
    async def server_metadata() -> Response:
        return _json({"name": "flightdeck", "version": _package_version(), "extensions": []})

    @app.get("/v2/health/live", tags=["oip-v2"])
    async def live(request: Request) -> Response:
        return _json({"live": gw(request).is_live()})

    @app.get("/v2/health/ready", tags=["oip-v2"])
    async def ready(request: Request) -> Response:
        is_ready = gw(request).is_ready()
        return _json({"ready": is_ready}, 200 if is_ready else 503)

    @app.get("/v2/models/{name}", tags=["oip-v2"])
    async def model_metadata(name: str, request: Request) -> Response:
        meta = gw(request).endpoint_metadata(name)
        return _json({"name": meta.name, "versions": meta.versions, "platform": meta.platform,
                      "inputs": [vars(t) for t in meta.inputs], "outputs": [vars(t) for t in meta.outputs]})

    @app.get("/v2/models/{name}/ready", tags=["oip-v2"])
    async def model_ready(name: str, request: Request) -> Response:
        return _json({"name": name, "ready": gw(request).endpoint_ready(name)})

    @app.post("/v2/models/{name}/infer", tags=["oip-v2"])
    async def infer(name: str, request: Request) -> Response:
        """OIP v2 inference: one input tensor per feature, shape [n] or [n, 1]."""
        return await _reply(oip_infer, request, name, None)

    @app.post("/v2/models/{name}/versions/{model_version}/infer", tags=["oip-v2"])
    async def infer_version(name: str, model_version: str, request: Request) -> Response:
        """OIP v2 inference pinned to one of the endpoint's model versions."""
        return await _reply(oip_infer, request, name, model_version)

    # ---- WebSocket stream ------------------------------------------------------------------
    @app.websocket("/stream/{endpoint}")
    async def stream(websocket: WebSocket, endpoint: str) -> None:
        """Rows in, scores out. Each message: one record, or {"rows": [...], "unit_id"?, "id"?}.

        An admin may force a variant with the X-Flightdeck-Variant header of the handshake (as on
        REST). A bad message gets {"error", "status"} and the stream stays open; a message over
        `max_body_bytes` closes it with 1009 (message too big).
        """
        await websocket.accept()
        gateway: Gateway = websocket.app.state.gateway
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes") or (message.get("text") or "").encode()
                if len(data) > settings.max_body_bytes:  # uvicorn's ws_max_size is the same limit
                    await websocket.close(1009, f"message over {settings.max_body_bytes} bytes")
                    return
                reply_id = None
                try:
                    payload = payloads.parse_json(data)
                    if not isinstance(payload, dict):
                        raise MalformedRequestError("a message must be a JSON object: a record or {\"rows\": [...]}.")
                    reply_id = payload.get("id") if "rows" in payload else None
                    records = payload["rows"] if "rows" in payload else [payload]
                    if not isinstance(records, list):
                        raise MalformedRequestError("`rows` must be a list of records.", field="rows")
                    columns = payloads.columns_from_records(records, settings.max_batch_rows, field="rows")
                    unit_id = (checked_id(text_param(payload.get("unit_id"), "unit_id"), "unit_id") if "rows" in payload
                               else checked_id(websocket.headers.get(UNIT_HEADER), UNIT_HEADER))
                    # A variant forced in the handshake: admins only, and only where the endpoint allows it.
                    override = allowed_override(settings, websocket.headers.get("authorization"),
                                                websocket.headers.get(VARIANT_HEADER) or None, "X-Flightdeck-Variant")
                    prediction = await gateway.predict(endpoint, columns, unit_id=unit_id, override=override)
                    reply = {"id": reply_id, "request_id": prediction.request_id, "predictions": prediction.scores,
                             "variant": prediction.variant, "model_version": prediction.model_version,
                             "route_version": prediction.route_version}
                except RequestError as exc:
                    reply = {"id": reply_id, "error": str(exc), "status": exc.status, "field": exc.field}
                await websocket.send_text(orjson.dumps(reply, option=orjson.OPT_SERIALIZE_NUMPY).decode())
        except WebSocketDisconnect:
            return

    # ---- observability ---------------------------------------------------------------------
    @app.get("/metrics", tags=["observability"])
    async def metrics(request: Request) -> Response:
        gw(request).metrics.flush()  # this worker's histograms counted since the last flush
        body, content_type = exposition(gw(request).metrics.registry)
        return Response(body, media_type=content_type)

    @app.get("/stats/{endpoint}", tags=["observability"])
    async def stats(endpoint: str, request: Request, since_route_version: int = 0, role: str = "live") -> Response:
        """Running sums per variant since a route version, added over every worker (for the gates)."""
        gateway = gw(request)
        if role not in ("live", "shadow"):
            raise MalformedRequestError("role must be `live` or `shadow`.", field="role")
        store: StatsStore = gateway.stats_store
        summary = await gateway.in_background(store.summary, endpoint, since_route_version, role)
        return _json({"endpoint": endpoint, "since_route_version": since_route_version, "role": role,
                      "route_version": gateway.route_version,
                      "variants": [s.to_dict() for s in summary]})

    # ---- admin -----------------------------------------------------------------------------
    @app.get("/admin/routes", tags=["admin"])
    async def get_routes(request: Request, caller: Admin) -> Response:
        stored = await gw(request).in_background(gw(request).route_store.current)
        if stored is None:
            return _json({"version": 0, "document": None})
        return _json({"version": stored.version, "document": stored.document, "author": stored.author,
                      "comment": stored.comment, "created_at": stored.created_at})

    @app.put("/admin/routes", tags=["admin"])
    async def put_routes(body: RouteReplace, request: Request, caller: Admin) -> Response:
        """Replace the whole route table atomically. Workers switch within milliseconds on PostgreSQL
        (within a poll interval on SQLite); with `wait`, the answer comes once every worker has."""
        stored = await gw(request).replace_routes(body.document, caller, body.expected_version, body.comment)
        log.info("route table v%s stored by %s", stored.version, caller)
        answer = {"version": stored.version, "author": stored.author, "created_at": stored.created_at}
        if body.wait:
            workers = await gw(request).wait_for_routes(stored.version, body.wait_timeout_s)
            answer["workers"] = [w.to_dict() for w in workers]
        return _json(answer)

    @app.get("/admin/routes/wait", tags=["admin"])
    async def wait_for_routes(request: Request, caller: Admin, version: int, timeout_s: float = 10.0) -> Response:
        """Answer once every live worker serves route `version` or newer; 504 naming the others."""
        if not 0 < timeout_s <= 300:
            raise MalformedRequestError("timeout_s must be within (0, 300] seconds.", field="timeout_s")
        workers = await gw(request).wait_for_routes(version, timeout_s)
        return _json({"version": version, "workers": [w.to_dict() for w in workers]})

    @app.get("/admin/routes/history", tags=["admin"])
    async def route_history(request: Request, caller: Admin, limit: int = 50) -> Response:
        records = await gw(request).in_background(gw(request).route_store.history, max(1, min(limit, 1000)))
        return _json({"history": [r.to_dict() for r in records]})

    @app.post("/admin/outcomes", tags=["admin"])
    async def outcomes(body: OutcomesIn, request: Request, caller: Admin) -> Response:
        """Delayed labels, joined to predictions by request id or unit id."""
        store = OutcomeStore(gw(request).engine)
        items = [Outcome(o.request_id, o.unit_id, o.label, o.observed_at) for o in body.outcomes]
        return _json({"recorded": await gw(request).in_background(store.record, items)})

    @app.get("/admin/status", tags=["admin"])
    async def status(request: Request, caller: Admin) -> Response:
        return _json(gw(request).status())

    return ScoringFastPath(app, settings)


def _refuse(status: int, message: str) -> NoReturn:
    raise HTTPException(status, message, headers={"WWW-Authenticate": "Bearer"})


def _package_version() -> str:
    try:
        return version("flightdeck")
    except PackageNotFoundError:
        return "0+unknown"

