"""Request bodies of each protocol → one shape: columns (feature name → list of values).

MLflow's scoring-server formats (`dataframe_split`, `dataframe_records`, `inputs`,
`instances`), Open Inference Protocol v2 tensors and the WebSocket's records all end up
as `dict[str, list]`, checked for shape and size here and for types by the model
(`runtime.feeds_from_columns`).

OIP v2 tensors may travel as JSON `data` or raw bytes: the REST binary tensor data extension
(a JSON header of `Inference-Header-Content-Length` bytes, then each binary tensor's bytes
in input order) and gRPC's `raw_input_contents` share one decoder (`decode_raw`), and the
answer goes back in the request's encoding (`oip_binary_outputs`, `oip_reply_body`).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson

from flightdeck.serving.errors import InvalidInputError, MalformedRequestError, PayloadTooLargeError

Columns = dict[str, list]

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")


def parse_json(body: bytes) -> Any:
    """Decode a JSON body; MalformedRequestError (400) when it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequestError(f"body is not valid JSON ({exc}). Fix: send a JSON document.") from None


def columns_from_mlflow(payload: Any, max_rows: int) -> tuple[Columns, dict]:
    """(columns, params) of an MLflow `/invocations` body."""
    if not isinstance(payload, dict):
        raise MalformedRequestError("body must be a JSON object. Fix: send "
                                    '{"dataframe_split": {"columns": [...], "data": [[...]]}}.')
    formats = [key for key in MLFLOW_FORMATS if key in payload]
    if len(formats) != 1:
        raise MalformedRequestError(
            f"body must have exactly one of {list(MLFLOW_FORMATS)}, found {formats or 'none'}. "
            "Fix: send one of those keys.", field=formats[1] if len(formats) > 1 else None)
    params = payload.get("params") or {}
    if not isinstance(params, dict):
        raise MalformedRequestError("`params` must be an object.", field="params")
    key = formats[0]
    value = payload[key]
    if key == "dataframe_split":
        columns = _from_split(value, max_rows)
    elif isinstance(value, list):
        columns = columns_from_records(value, max_rows, field=key)
    elif isinstance(value, dict):
        columns = _from_column_dict(value, max_rows, field=key)
    else:
        raise MalformedRequestError(f"`{key}` must be a list of records or an object of columns.", field=key)
    return columns, params


def _from_split(split: Any, max_rows: int) -> Columns:
    if not isinstance(split, dict) or not isinstance(split.get("columns"), list) \
            or not isinstance(split.get("data"), list):
        raise MalformedRequestError('`dataframe_split` must be {"columns": [...], "data": [[...], ...]}.',
                                    field="dataframe_split")
    names, rows = split["columns"], split["data"]
    if not set(map(type, names)) <= {str} or len(set(names)) != len(names):
        raise InvalidInputError("`dataframe_split.columns` must be distinct strings.",
                                field="dataframe_split.columns")
    _check_rows(len(rows), max_rows)
    width = len(names)
    for index, row in enumerate(rows):
        if type(row) is not list or len(row) != width:
            raise InvalidInputError(
                f"row {index} of `dataframe_split.data` has {len(row) if isinstance(row, list) else 'no'} "
                f"values for {width} columns. Fix: one value per column in every row.",
                field=f"dataframe_split.data[{index}]")
    return dict(zip(names, map(list, zip(*rows, strict=True)), strict=True))


def columns_from_records(records: list, max_rows: int, field: str = "records") -> Columns:
    """Columns of a list of {feature: value} records; every record must have the same fields."""
    _check_rows(len(records), max_rows)
    if not all(isinstance(r, dict) for r in records):
        raise MalformedRequestError(f"`{field}` must be a list of objects.", field=field)
    names = list(records[0])
    expected = set(names)
    for index, record in enumerate(records):
        if record.keys() != expected:
            gap = sorted(expected ^ set(record))
            raise InvalidInputError(
                f"record {index} of `{field}` differs from record 0 in field(s) {gap}. "
                "Fix: send the same fields in every record.", field=f"{field}[{index}].{gap[0]}")
    return {name: [r[name] for r in records] for name in names}


def _from_column_dict(value: dict, max_rows: int, field: str) -> Columns:
    columns: Columns = {}
    for name, values in value.items():
        columns[name] = values if isinstance(values, list) else [values]
    return _check_columns(columns, max_rows, field)


def columns_from_oip_inputs(inputs: Any, max_rows: int, binary: bytes | None = None) -> Columns:
    """Columns of Open Inference Protocol v2 input tensors, one tensor per feature.

    Each tensor is {"name", "datatype", "shape": [n] or [n, 1], "data": flat or nested}, or,
    with the binary tensor data extension, {"name", "datatype", "shape", "parameters":
    {"binary_data_size": bytes}} and its bytes taken in input order from `binary` (the part of
    the body after the JSON header).
    """
    if not isinstance(inputs, list) or not inputs:
        raise MalformedRequestError("`inputs` must be a non-empty list of tensors.", field="inputs")
    columns: Columns = {}
    offset = 0
    for index, tensor in enumerate(inputs):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise MalformedRequestError(f"inputs[{index}] must be an object with a `name`.",
                                        field=f"inputs[{index}]")
        name = tensor["name"]
        shape, data = tensor.get("shape"), tensor.get("data")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape) \
                or len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise InvalidInputError(f"tensor {name!r}: shape must be [n] or [n, 1], got {shape!r}.",
                                    field=f"inputs[{index}].shape")
        size = _binary_data_size(tensor, index)
        if size is not None:
            if data is not None:
                raise MalformedRequestError(
                    f"tensor {name!r} has both `data` and parameters.binary_data_size. Fix: send its values "
                    "one way only.", field=f"inputs[{index}].data")
            if binary is None or offset + size > len(binary):
                have = 0 if binary is None else len(binary) - offset
                raise MalformedRequestError(
                    f"tensor {name!r} declares binary_data_size {size} but only {have} binary byte(s) follow "
                    "the JSON header. Fix: send Inference-Header-Content-Length (the JSON header's length in "
                    "bytes) and append every binary tensor's bytes after the header, in input order.",
                    field=f"inputs[{index}].parameters.binary_data_size")
            flat = decode_raw(name, tensor.get("datatype"), binary[offset:offset + size])
            offset += size
        elif not isinstance(data, list):
            raise InvalidInputError(f"tensor {name!r}: `data` must be a list.", field=f"inputs[{index}].data")
        else:
            flat = _flatten(data)
        if len(flat) != math.prod(shape):
            raise InvalidInputError(
                f"tensor {name!r}: shape {shape} holds {math.prod(shape)} values but data has {len(flat)}.",
                field=f"inputs[{index}].data")
        if name in columns:
            raise InvalidInputError(f"tensor {name!r} appears twice.", field=f"inputs[{index}].name")
        columns[name] = flat
    if binary is not None and offset != len(binary):
        raise MalformedRequestError(
            f"{len(binary) - offset} byte(s) after the JSON header belong to no input: the inputs' "
            f"binary_data_size values add up to {offset}, the body carries {len(binary)}. Fix: make "
            "Inference-Header-Content-Length the JSON header's length in bytes and each binary_data_size "
            "its tensor's length.", field="inputs")
    return _check_columns(columns, max_rows, "inputs")


def _binary_data_size(tensor: dict, index: int) -> int | None:
    parameters = tensor.get("parameters")
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise MalformedRequestError(f"inputs[{index}].parameters must be an object.",
                                    field=f"inputs[{index}].parameters")
    size = parameters.get("binary_data_size")
    if size is None:
        return None
    if type(size) is not int or size < 0:
        raise MalformedRequestError(f"inputs[{index}].parameters.binary_data_size must be a byte count "
                                    f"(an integer >= 0), got {size!r}.",
                                    field=f"inputs[{index}].parameters.binary_data_size")
    return size


# ---- OIP v2 binary tensors: the REST binary data extension and gRPC raw contents -------------

HEADER_LENGTH = "inference-header-content-length"

# Element layout of fixed-size data types in raw tensor bytes: little-endian, no padding.
RAW_DTYPES = {
    "BOOL": np.dtype("?"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_BYTES_LENGTH = struct.Struct("<I")


def split_oip_body(body: bytes, header_length: str | None) -> tuple[Any, bytes | None]:
    """(JSON header, binary part) of an OIP v2 REST body.

    Without `Inference-Header-Content-Length` the whole body is JSON (binary part None);
    with it, the first that many bytes are the JSON header and the rest the tensors' bytes."""
    if header_length is None:
        return parse_json(body), None
    header_length = header_length.strip()
    if not header_length.isdigit() or not header_length.isascii():
        raise MalformedRequestError(
            f"Inference-Header-Content-Length must be a byte count, got {header_length[:40]!r}. Fix: send "
            "the JSON header's length in bytes (or leave the header out for an all-JSON body).",
            field="Inference-Header-Content-Length")
    size = int(header_length)
    if size == 0 or size > len(body):
        raise MalformedRequestError(
            f"Inference-Header-Content-Length is {size} but the body has {len(body)} byte(s). Fix: send the "
            "JSON header's length in bytes, 1 to the body's length.", field="Inference-Header-Content-Length")
    try:
        header = orjson.loads(body[:size])
    except orjson.JSONDecodeError as exc:
        raise MalformedRequestError(
            f"the first {size} byte(s) of the body (Inference-Header-Content-Length) are not a JSON header "
            f"({exc}). Fix: make the header count exactly the JSON part's bytes.",
            field="Inference-Header-Content-Length") from None
    return header, body[size:]


def decode_raw(name: str, datatype: Any, raw: bytes) -> list:
    """The elements of one tensor sent as raw bytes (little-endian; BYTES as 4-byte-length-prefixed
    elements), as a flat list."""
    if datatype == "BYTES":
        return [_utf8(name, value) for value in _split_raw_bytes(name, raw)]
    dtype = RAW_DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise MalformedRequestError(
            f"input tensor {name!r}: unknown datatype {datatype!r} for binary data; expected one of "
            f"{', '.join(sorted([*RAW_DTYPES, 'BYTES']))}", field=name)
    if len(raw) % dtype.itemsize:
        raise MalformedRequestError(
            f"input tensor {name!r}: {len(raw)} raw bytes is not a whole number of {dtype.itemsize}-byte "
            f"{datatype} elements", field=name)
    return np.frombuffer(raw, dtype=dtype).tolist()


def _split_raw_bytes(name: str, raw: bytes) -> list[bytes]:
    """Raw BYTES elements: each a 4-byte little-endian length followed by that many bytes."""
    elements, offset = [], 0
    while offset < len(raw):
        if offset + _BYTES_LENGTH.size > len(raw):
            raise MalformedRequestError(
                f"input tensor {name!r}: raw BYTES data ends inside the length prefix at byte {offset}", field=name)
        (length,) = _BYTES_LENGTH.unpack_from(raw, offset)
        offset += _BYTES_LENGTH.size
        if offset + length > len(raw):
            raise MalformedRequestError(
                f"input tensor {name!r}: raw BYTES element at byte {offset} runs past the end of the data",
                field=name)
        elements.append(raw[offset:offset + length])
        offset += length
    return elements


def _utf8(name: str, value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MalformedRequestError(f"input tensor {name!r}: BYTES element is not UTF-8 ({error.reason})",
                                    field=name) from None


def oip_binary_outputs(payload: dict, output_names: tuple[str, ...]) -> bool:
    """Whether the answer's outputs go as binary data (the request's `binary_data_output`
    parameter, or `binary_data` on a requested output); an unknown requested output is a 400."""
    parameters = payload.get("parameters") or {}
    binary = parameters.get("binary_data_output", False) if isinstance(parameters, dict) else False
    if not isinstance(binary, bool):
        raise MalformedRequestError("parameters.binary_data_output must be true or false.",
                                    field="parameters.binary_data_output")
    outputs = payload.get("outputs")
    if outputs is None:
        return binary
    if not isinstance(outputs, list):
        raise MalformedRequestError("`outputs` must be a list of {\"name\": ...} objects.", field="outputs")
    for index, output in enumerate(outputs):
        if not isinstance(output, dict) or output.get("name") not in output_names:
            name = output.get("name") if isinstance(output, dict) else output
            raise MalformedRequestError(
                f"outputs[{index}] asks for {name!r}; this model's outputs are {list(output_names)}.",
                field=f"outputs[{index}].name")
        wanted = (output.get("parameters") or {}).get("binary_data", binary)
        if not isinstance(wanted, bool):
            raise MalformedRequestError(f"outputs[{index}].parameters.binary_data must be true or false.",
                                        field=f"outputs[{index}].parameters.binary_data")
        if (output.get("parameters") or {}).get("classification"):
            raise MalformedRequestError(
                f"outputs[{index}]: the classification extension is not supported. Fix: ask for the "
                "probabilities tensor and threshold it.", field=f"outputs[{index}].parameters.classification")
        binary = wanted
    return binary


def oip_reply_body(answer: dict, binary: bool) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of an OIP v2 REST answer; with `binary`, each output's `data` travels as raw
    little-endian bytes after the JSON header, as the binary tensor data extension has it."""
    if not binary:
        return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY), {}
    chunks = []
    outputs = []
    for output in answer["outputs"]:
        raw = np.ascontiguousarray(output["data"], dtype=RAW_DTYPES[output["datatype"]]).tobytes()
        chunks.append(raw)
        tensor = {k: v for k, v in output.items() if k != "data"}
        tensor["parameters"] = {**output.get("parameters", {}), "binary_data_size": len(raw)}
        outputs.append(tensor)
    header = orjson.dumps({**answer, "outputs": outputs}, option=orjson.OPT_SERIALIZE_NUMPY)
    return header + b"".join(chunks), {"content-type": "application/octet-stream",
                                       HEADER_LENGTH: str(len(header))}


def _flatten(data: list) -> list:
    if data and isinstance(data[0], list):
        return [v for row in data for v in (row if isinstance(row, list) else [row])]
    return data


def _check_columns(columns: Columns, max_rows: int, field: str) -> Columns:
    if not columns:
        raise InvalidInputError(f"`{field}` holds no columns.", field=field)
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        counts = {name: len(v) for name, v in columns.items()}
        raise InvalidInputError(f"`{field}` columns have different lengths {counts}. Fix: one value per row "
                                "in every column.", field=field)
    _check_rows(lengths.pop(), max_rows)
    return columns


def _check_rows(n_rows: int, max_rows: int) -> None:
    if n_rows == 0:
        raise InvalidInputError("the request holds no rows. Fix: send at least one row.")
    if n_rows > max_rows:
        raise PayloadTooLargeError(f"{n_rows} rows exceed the limit of {max_rows} per request. "
                                   "Fix: split the batch (or use batch scoring for bulk work).")

