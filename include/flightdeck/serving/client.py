"""A small client of the gateway's REST API, for the demo, the promotion DAGs and users' scripts.

Errors: a 4xx answer raises `GatewayRequestError`, a `FlightdeckError` (the call was wrong:
bad token, unknown endpoint, invalid route table) that a task must not retry; a 5xx raises
`GatewayUnavailableError`, which is not one (retrying may help); a gateway that cannot be
reached raises httpx's `HTTPError`, transient too. Both answers share the base `GatewayError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from flightdeck.errors import FlightdeckError

log = logging.getLogger(__name__)

CONFLICT = 409
DEFAULT_EDIT_ATTEMPTS = 5
# How long a route change waits for every gateway worker (below the client's default HTTP timeout).
WAIT_TIMEOUT_S = 8.0


class GatewayError(Exception):
    """The gateway refused or failed a call; carries the status and the gateway's message."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"gateway answered {status}: {message}")

    @staticmethod
    def for_status(status: int, message: str) -> GatewayError:
        """The error of an answer: a user error for a 4xx, a transient one otherwise."""
        return (GatewayRequestError if status < 500 else GatewayUnavailableError)(status, message)


class GatewayRequestError(GatewayError, FlightdeckError):
    """A 4xx: the request itself is wrong (the message names the field and the fix)."""


class GatewayUnavailableError(GatewayError):
    """A 5xx: the gateway failed; the same call may succeed later."""


class RouteConflictError(GatewayRequestError):
    """An endpoint edit lost every race for the route table (409 on each attempt)."""

    def __init__(self, endpoint: str, attempts: int) -> None:
        self.endpoint = endpoint
        self.attempts = attempts
        super().__init__(CONFLICT, f"the route table changed under each of {attempts} attempts to edit endpoint "
                                   f"{endpoint!r}. Fix: stop the other writer of the route table (see "
                                   "/admin/routes/history), then run the edit again")


class EndpointNotFoundError(GatewayRequestError):
    """An edit names an endpoint the route table does not have (a typo would otherwise create it)."""

    def __init__(self, endpoint: str, known: list[str]) -> None:
        self.endpoint = endpoint
        self.known = known
        super().__init__(404, f"endpoint {endpoint!r} is not in the gateway's route table (endpoints: {known}). "
                              "Fix: name one of those endpoints, or add it to the route table first "
                              "(PUT /admin/routes, serving the champion with policy single)")


EndpointEdit = Callable[[dict | None], dict | None]
"""Given an endpoint's spec in force (None when the table has no such endpoint and the edit
may create it), the spec to store, or None to leave it as it is. Called again on the new table after a conflict, so it
must compute from its argument, not from state it keeps; it may raise to refuse the edit."""


@dataclass(frozen=True)
class EndpointUpdate:
    """What `update_endpoint` did: `version` is the route table it wrote (when `written`) or
    found already right; `spec` the endpoint's spec as written or as read; `attempts` the reads."""

    endpoint: str
    written: bool
    version: int
    spec: dict | None
    attempts: int


class GatewayClient:
    """Calls one gateway. `token` is needed for the admin methods only."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 10.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                message = response.json().get("error") or response.json().get("detail")
            except ValueError:
                message = response.text
            raise GatewayError.for_status(response.status_code, str(message))
        return response.json()

    # ---- scoring -----------------------------------------------------------------------------
    def invocations(self, records: list[dict], endpoint: str | None = None, unit_id: str | None = None) -> dict:
        """MLflow-format scoring (`dataframe_records`); the answer names variant and model version."""
        path = f"/endpoints/{endpoint}/invocations" if endpoint else "/invocations"
        headers = {"X-Unit-Id": unit_id} if unit_id else None
        return self._call("POST", path, json={"dataframe_records": records}, headers=headers)

    def metadata(self, endpoint: str) -> dict:
        """OIP v2 model metadata of an endpoint: versions, typed inputs and outputs."""
        return self._call("GET", f"/v2/models/{endpoint}")

    def infer(self, endpoint: str, records: list[dict]) -> dict:
        """Open Inference Protocol v2 scoring: one tensor per feature, typed from the endpoint's metadata."""
        inputs = self.metadata(endpoint)["inputs"]
        tensors = [{"name": spec["name"], "datatype": spec["datatype"], "shape": [len(records), 1],
                    "data": [r[spec["name"]] for r in records]} for spec in inputs]
        return self._call("POST", f"/v2/models/{endpoint}/infer", json={"inputs": tensors})

    def ready(self) -> bool:
        return self._http.get("/v2/health/ready").status_code == 200

    # ---- gates and admin ---------------------------------------------------------------------
    def stats(self, endpoint: str, since_route_version: int = 0, role: str = "live") -> list[dict]:
        """Running sums per variant since a route version, over every worker."""
        return self._call("GET", f"/stats/{endpoint}",
                          params={"since_route_version": since_route_version, "role": role})["variants"]

    def routes(self) -> dict:
        """{"version", "document", "author", "comment", "created_at"} of the table in force."""
        return self._call("GET", "/admin/routes")

    def replace_routes(self, document: dict, comment: str | None = None,
                       expected_version: int | None = None, wait: bool = False) -> int:
        """Store a new route table; returns its version. With `wait`, returns once every worker
        serves it (GatewayUnavailableError, a 504, when some do not within WAIT_TIMEOUT_S)."""
        body = {"document": document, "comment": comment, "expected_version": expected_version}
        if wait:
            body |= {"wait": True, "wait_timeout_s": WAIT_TIMEOUT_S}
        return self._call("PUT", "/admin/routes", json=body)["version"]

    def wait_for_routes(self, version: int) -> list[dict]:
        """Return the gateway's workers once every one serves route `version` (or newer)."""
        return self._call("GET", "/admin/routes/wait", params={"version": version, "timeout_s": WAIT_TIMEOUT_S})["workers"]

    def update_endpoint(self, name: str, edit: EndpointEdit, *, comment: str | None = None,
                        attempts: int = DEFAULT_EDIT_ATTEMPTS, create: bool = False,
                        wait: bool = False) -> EndpointUpdate:
        """Edit one endpoint of the route table, leaving the others as they are.

        The endpoint must exist (EndpointNotFoundError names it and the ones that do) unless
        `create` is true; then `edit` is given None for a missing endpoint.

        Reads the table, applies `edit` to the endpoint's spec and stores the result with the
        version it read (`expected_version`). When another writer stored a table in between
        (409), reads again and re-applies `edit`, up to `attempts` reads in all, then raises
        RouteConflictError. Nothing is stored when `edit` returns None or a spec equal to the
        one in force (as the gateway validates them), so re-running an edit adds no version.
        With `wait`, returns only once every gateway worker serves the table written or found.
        """
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        for attempt in range(1, attempts + 1):
            stored = self.routes()
            document = stored["document"] or {"endpoints": {}}
            current = document["endpoints"].get(name)
            if current is None and not create:
                raise EndpointNotFoundError(name, sorted(document["endpoints"]))
            desired = edit(current)
            if desired is None or _same_spec(desired, current):
                if wait:  # a re-run after a timed-out wait waits again for the table in force
                    self.wait_for_routes(int(stored["version"]))
                return EndpointUpdate(name, False, int(stored["version"]), current, attempt)
            new_document = {**document, "endpoints": {**document["endpoints"], name: desired}}
            try:
                version = self.replace_routes(new_document, comment=comment, expected_version=stored["version"])
            except GatewayRequestError as exc:
                if exc.status != CONFLICT:
                    raise
                log.info("route table changed while editing endpoint %s (attempt %d of %d); reading it again",
                         name, attempt, attempts)
                continue
            if wait:
                self.wait_for_routes(version)
            return EndpointUpdate(name, True, version, desired, attempt)
        raise RouteConflictError(name, attempts)

    def history(self, limit: int = 50) -> list[dict]:
        return self._call("GET", "/admin/routes/history", params={"limit": limit})["history"]

    def record_outcomes(self, outcomes: list[dict]) -> int:
        """Delayed labels: [{"request_id" or "unit_id", "label", "observed_at"?}, ...]."""
        return self._call("POST", "/admin/outcomes", json={"outcomes": outcomes})["recorded"]


def _same_spec(desired: dict, current: dict | None) -> bool:
    """Equal as the gateway stores them (it keeps defaults out of the document). A spec that
    does not validate is never the same: storing it lets the gateway say what is wrong."""
    from pydantic import ValidationError

    from flightdeck.serving.routes import EndpointSpec

    if current is None:
        return False
    try:
        return EndpointSpec.model_validate(desired) == EndpointSpec.model_validate(current)
    except ValidationError:
        return False


def grpc_infer(target: str, endpoint: str, records: list[dict], inputs: list[dict], variant: str | None = None,
               timeout: float = 10.0, token: str | None = None):
    """Score over OIP v2 gRPC at `target` ("host:port"); `inputs` is the endpoint metadata's input list.

    `variant` forces one of the endpoint's variants, which only an admin may do: pass `token`."""
    import grpc

    from flightdeck.serving.protos import grpc_predict_v2_pb2 as pb2
    from flightdeck.serving.protos import grpc_predict_v2_pb2_grpc as pb2_grpc

    tensors = []
    for spec in inputs:
        values = [r[spec["name"]] for r in records]
        contents = (pb2.InferTensorContents(bytes_contents=[str(v).encode() for v in values])
                    if spec["datatype"] == "BYTES" else pb2.InferTensorContents(fp64_contents=values))
        tensors.append(pb2.ModelInferRequest.InferInputTensor(
            name=spec["name"], datatype=spec["datatype"], shape=[len(records), 1], contents=contents))
    parameters = {"variant": pb2.InferParameter(string_param=variant)} if variant else {}
    with grpc.insecure_channel(target) as channel:
        reply = pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            pb2.ModelInferRequest(model_name=endpoint, inputs=tensors, parameters=parameters), timeout=timeout,
            metadata=[("authorization", f"Bearer {token}")] if token else None)
    return reply
