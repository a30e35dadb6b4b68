"""The gateway over gRPC: the Open Inference Protocol v2 `inference.GRPCInferenceService`.

Each uvicorn worker process starts its own server on the shared port (SO_REUSEPORT), so the
kernel spreads gRPC connections over the workers just like HTTP ones. Requests become the
same `Gateway.predict` call the REST transport makes; `RequestError`s map to gRPC status
codes the way they map to HTTP statuses, and anything else is an INTERNAL error that is
logged and never stops the server.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Any, TypeVar

import grpc
import numpy as np

from flightdeck.serving import payloads
from flightdeck.serving.errors import MalformedRequestError, RequestError
from flightdeck.serving.protos import grpc_predict_v2_pb2 as pb2
from flightdeck.serving.protos import grpc_predict_v2_pb2_grpc as pb2_grpc
from flightdeck.serving.scoring import allowed_override, checked_id

logger = logging.getLogger(__name__)

SERVER_NAME = "flightdeck"
OUTPUT_NAME = "probabilities"

_STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ABORTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}

# The InferTensorContents field that carries each data type (FP16 only travels raw).
_CONTENTS_FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

_RAW_DTYPES = payloads.RAW_DTYPES  # raw_input_contents' element layouts (little-endian)

Context = grpc.aio.ServicerContext
Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def status_code(error: RequestError) -> grpc.StatusCode:
    """The gRPC status code of a gateway error, mirroring its HTTP status."""
    if error.status in _STATUS_CODES:
        return _STATUS_CODES[error.status]
    return grpc.StatusCode.INVALID_ARGUMENT if error.status < 500 else grpc.StatusCode.INTERNAL


def _guarded(handler: Handler) -> Handler:
    """Turn a handler's exceptions into gRPC statuses instead of letting them escape."""

    @functools.wraps(handler)
    async def guarded(self: InferenceServicer, request: Any, context: Context) -> Any:
        try:
            return await handler(self, request, context)
        except RequestError as error:
            await context.abort(status_code(error), str(error))
        except Exception:
            logger.exception("gRPC %s failed", handler.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the gateway log")

    return guarded  # type: ignore[return-value]


class InferenceServicer(pb2_grpc.GRPCInferenceServiceServicer):
    """OIP v2 health, metadata and inference RPCs answered by a `Gateway`."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway

    @_guarded
    async def ServerLive(self, request: pb2.ServerLiveRequest, context: Context) -> pb2.ServerLiveResponse:
        return pb2.ServerLiveResponse(live=self.gateway.is_live())

    @_guarded
    async def ServerReady(self, request: pb2.ServerReadyRequest, context: Context) -> pb2.ServerReadyResponse:
        return pb2.ServerReadyResponse(ready=self.gateway.is_ready())

    @_guarded
    async def ModelReady(self, request: pb2.ModelReadyRequest, context: Context) -> pb2.ModelReadyResponse:
        return pb2.ModelReadyResponse(ready=self.gateway.endpoint_ready(request.name))

    @_guarded
    async def ServerMetadata(self, request: pb2.ServerMetadataRequest, context: Context) -> pb2.ServerMetadataResponse:
        return pb2.ServerMetadataResponse(name=SERVER_NAME, version=server_version(), extensions=[])

    @_guarded
    async def ModelMetadata(self, request: pb2.ModelMetadataRequest, context: Context) -> pb2.ModelMetadataResponse:
        return model_metadata_response(self.gateway.endpoint_metadata(request.name))

    @_guarded
    async def ModelInfer(self, request: pb2.ModelInferRequest, context: Context) -> pb2.ModelInferResponse:
        columns = payloads.columns_from_oip_inputs(
            input_tensors(request), self.gateway.settings.max_batch_rows)
        requested_outputs(request)
        version = request.model_version or None
        override = string_parameter(request.parameters, "variant")
        authorization = dict(context.invocation_metadata() or ()).get("authorization")
        prediction = await self.gateway.predict(
            request.model_name,
            columns,
            unit_id=checked_id(string_parameter(request.parameters, "unit_id", allow_int=True), "unit_id"),
            override=allowed_override(self.gateway.settings, authorization, override,
                                      "variant" if override is not None else "model_version", version),
            version=version,
            client_request_id=checked_id(request.id, "id"),
        )
        # Answer in the request's encoding: raw bytes to a request that sent raw bytes (what
        # tritonclient does, and all its InferResult.as_numpy reads), typed contents otherwise.
        return infer_response(request.model_name, prediction, raw=bool(request.raw_input_contents))


async def start_grpc_server(gateway: Any, host: str, port: int) -> grpc.aio.Server:
    """Start the OIP v2 gRPC server on host:port; stop it with `await server.stop(grace)`.

    Every worker process binds the same port, hence SO_REUSEPORT. Messages above the
    gateway's body limit are refused by gRPC itself with RESOURCE_EXHAUSTED.
    """
    server = grpc.aio.server(options=[
        ("grpc.so_reuseport", 1),
        ("grpc.max_receive_message_length", gateway.settings.max_body_bytes),
    ])
    pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(gateway), server)
    bound = server.add_insecure_port(_address(host, port))  # RuntimeError when it cannot bind
    await server.start()
    logger.info("OIP v2 gRPC listening on %s", _address(host, bound))
    return server


def _address(host: str, port: int) -> str:
    """host:port, with an IPv6 host in brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


@functools.cache
def server_version() -> str:
    """The installed flightdeck version."""
    try:
        return metadata.version(SERVER_NAME)
    except metadata.PackageNotFoundError:
        return "unknown"


def model_metadata_response(meta: Any) -> pb2.ModelMetadataResponse:
    """The ModelMetadata answer for a gateway's endpoint metadata."""
    return pb2.ModelMetadataResponse(
        name=meta.name,
        versions=list(meta.versions),
        platform=meta.platform,
        inputs=[_tensor_metadata(spec) for spec in meta.inputs],
        outputs=[_tensor_metadata(spec) for spec in meta.outputs],
    )


def _tensor_metadata(spec: Any) -> pb2.ModelMetadataResponse.TensorMetadata:
    return pb2.ModelMetadataResponse.TensorMetadata(
        name=spec.name, datatype=spec.datatype, shape=list(spec.shape))


def string_parameter(parameters: Any, key: str, *, allow_int: bool = False) -> str | None:
    """A request parameter as a string; None when absent or empty."""
    if key not in parameters:
        return None
    parameter = parameters[key]
    choice = parameter.WhichOneof("parameter_choice")
    if choice == "string_param":
        return parameter.string_param or None
    if choice == "int64_param" and allow_int:
        return str(parameter.int64_param)
    kind = "a string or an integer" if allow_int else "a string"
    raise MalformedRequestError(f"parameter {key!r} must be {kind}", field=key)


def requested_outputs(request: pb2.ModelInferRequest) -> None:
    """Refuse requested outputs this model does not have (INVALID_ARGUMENT naming them)."""
    for index, output in enumerate(request.outputs):
        if output.name != OUTPUT_NAME:
            raise MalformedRequestError(
                f"outputs[{index}] asks for {output.name!r}; this model's only output is {OUTPUT_NAME!r}",
                field=f"outputs[{index}].name")


def infer_response(endpoint: str, prediction: Any, raw: bool = False) -> pb2.ModelInferResponse:
    """The ModelInfer answer: one FP64 tensor of scores plus how the request was routed; with
    `raw`, the scores travel in raw_output_contents (little-endian float64), else in contents."""
    scores = np.asarray(prediction.scores, dtype=np.float64).ravel()
    output = pb2.ModelInferResponse.InferOutputTensor(name=OUTPUT_NAME, datatype="FP64", shape=[len(scores)])
    if not raw:
        output.contents.fp64_contents.extend(scores.tolist())
    return pb2.ModelInferResponse(
        raw_output_contents=[scores.astype("<f8").tobytes()] if raw else [],
        model_name=endpoint,
        model_version=prediction.model_version,
        id=prediction.client_request_id or prediction.request_id,  # OIP echoes the caller's id
        outputs=[output],
        parameters={
            "request_id": pb2.InferParameter(string_param=prediction.request_id),
            "variant": pb2.InferParameter(string_param=prediction.variant),
            "route_version": pb2.InferParameter(int64_param=prediction.route_version),
            "fallback": pb2.InferParameter(bool_param=prediction.fallback),
            "cached": pb2.InferParameter(bool_param=prediction.cached),
        },
    )


def input_tensors(request: pb2.ModelInferRequest) -> list[dict[str, Any]]:
    """The request's input tensors as OIP dicts: name, datatype, shape and flat data."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise MalformedRequestError(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
            "send one per input, in the order of inputs",
            field="raw_input_contents")
    return [
        tensor_dict(tensor, raw[index] if raw else None)
        for index, tensor in enumerate(request.inputs)
    ]


def tensor_dict(tensor: pb2.ModelInferRequest.InferInputTensor, raw: bytes | None) -> dict[str, Any]:
    """One input tensor as an OIP dict, its data read from `raw` when given, else from contents."""
    name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
    if datatype not in _CONTENTS_FIELDS and datatype not in _RAW_DTYPES:
        raise _tensor_error(name, f"unknown datatype {datatype!r}; expected one of "
                                  f"{', '.join(sorted({*_CONTENTS_FIELDS, *_RAW_DTYPES}))}")
    if any(dim < 0 for dim in shape):
        raise _tensor_error(name, f"shape {shape} has a negative dimension")
    if raw is None:
        data = _contents_data(name, datatype, tensor)
    elif tensor.HasField("contents"):
        raise _tensor_error(name, "has contents although the request uses raw_input_contents")
    else:
        data = _raw_data(name, datatype, raw)
    if len(data) != math.prod(shape):
        raise _tensor_error(name, f"shape {shape} needs {math.prod(shape)} elements, got {len(data)}")
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def _contents_data(name: str, datatype: str, tensor: pb2.ModelInferRequest.InferInputTensor) -> list:
    if datatype not in _CONTENTS_FIELDS:
        raise _tensor_error(name, f"{datatype} data must be sent in raw_input_contents")
    values = getattr(tensor.contents, _CONTENTS_FIELDS[datatype])
    if datatype == "BYTES":
        return [_utf8(name, value) for value in values]
    return list(values)


def _raw_data(name: str, datatype: str, raw: bytes) -> list:
    return payloads.decode_raw(name, datatype, raw)


def _utf8(name: str, value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _tensor_error(name, f"BYTES element is not UTF-8 ({error.reason})") from None


def _tensor_error(name: str, problem: str) -> MalformedRequestError:
    return MalformedRequestError(f"input tensor {name!r}: {problem}", field=name)

