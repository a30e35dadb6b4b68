"""Request bodies of each protocol → one shape: columns (feature name → list of values).

MLflow's scoring-server formats (`dataframe_split`, `dataframe_records`, `inputs`,
`instances`), Open Inference Protocol v2 tensors and the WebSocket's records all end up
as `dict[str, list]`, checked for shape and size here and for types by the model
(`runtime.feeds_from_columns`).
"""

from __future__ import annotations

import math
from typing import Any

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


def columns_from_oip_inputs(inputs: Any, max_rows: int) -> Columns:
    """Columns of Open Inference Protocol v2 input tensors, one tensor per feature.

    Each tensor is {"name", "datatype", "shape": [n] or [n, 1], "data": flat or nested}.
    """
    if not isinstance(inputs, list) or not inputs:
        raise MalformedRequestError("`inputs` must be a non-empty list of tensors.", field="inputs")
    columns: Columns = {}
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
        if not isinstance(data, list):
            raise InvalidInputError(f"tensor {name!r}: `data` must be a list.", field=f"inputs[{index}].data")
        flat = _flatten(data)
        if len(flat) != math.prod(shape):
            raise InvalidInputError(
                f"tensor {name!r}: shape {shape} holds {math.prod(shape)} values but data has {len(flat)}.",
                field=f"inputs[{index}].data")
        if name in columns:
            raise InvalidInputError(f"tensor {name!r} appears twice.", field=f"inputs[{index}].name")
        columns[name] = flat
    return _check_columns(columns, max_rows, "inputs")


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

