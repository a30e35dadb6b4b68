"""A small client of the gateway's REST API, for the demo, the promotion DAGs and users' scripts."""

from __future__ import annotations

from typing import Any

import httpx


class GatewayError(RuntimeError):
    """The gateway refused a call; carries the status and the gateway's message."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"gateway answered {status}: {message}")


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
            raise GatewayError(response.status_code, str(message))
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
                       expected_version: int | None = None) -> int:
        """Store a new route table; returns its version."""
        body = {"document": document, "comment": comment, "expected_version": expected_version}
        return self._call("PUT", "/admin/routes", json=body)["version"]

    def history(self, limit: int = 50) -> list[dict]:
        return self._call("GET", "/admin/routes/history", params={"limit": limit})["history"]

    def record_outcomes(self, outcomes: list[dict]) -> int:
        """Delayed labels: [{"request_id" or "unit_id", "label", "observed_at"?}, ...]."""
        return self._call("POST", "/admin/outcomes", json={"outcomes": outcomes})["recorded"]


def grpc_infer(target: str, endpoint: str, records: list[dict], inputs: list[dict], variant: str | None = None,
               timeout: float = 10.0):
    """Score over OIP v2 gRPC at `target` ("host:port"); `inputs` is the endpoint metadata's input list.

    `variant` forces one of the endpoint's variants (the tester override)."""
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
            pb2.ModelInferRequest(model_name=endpoint, inputs=tensors, parameters=parameters), timeout=timeout)
    return reply
