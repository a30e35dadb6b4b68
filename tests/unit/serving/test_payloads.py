"""Every protocol's body → columns, and the errors bad bodies get."""

from __future__ import annotations

import pytest

from flightdeck.serving.errors import InvalidInputError, MalformedRequestError, PayloadTooLargeError
from flightdeck.serving.payloads import (
    columns_from_mlflow,
    columns_from_oip_inputs,
    columns_from_records,
    parse_json,
)

EXPECTED = {"a": [1, 2], "b": ["x", "y"]}


@pytest.mark.parametrize("payload", [
    {"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]}},
    {"dataframe_split": {"index": [0, 1], "columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]}},
    {"dataframe_records": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]},
    {"inputs": {"a": [1, 2], "b": ["x", "y"]}},
    {"instances": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]},
])
def test_mlflow_formats_agree(payload):
    columns, params = columns_from_mlflow(payload, max_rows=10)
    assert columns == EXPECTED and params == {}


def test_mlflow_params_and_scalar_inputs():
    columns, params = columns_from_mlflow({"inputs": {"a": 1, "b": "x"}, "params": {"unit_id": "u1"}}, 10)
    assert columns == {"a": [1], "b": ["x"]} and params == {"unit_id": "u1"}


@pytest.mark.parametrize(("payload", "error", "fragment"), [
    ([1, 2], MalformedRequestError, "JSON object"),
    ({}, MalformedRequestError, "exactly one of"),
    ({"inputs": {}, "instances": []}, MalformedRequestError, "exactly one of"),
    ({"dataframe_split": {"columns": ["a"]}}, MalformedRequestError, "dataframe_split"),
    ({"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}}, InvalidInputError, "distinct"),
    ({"dataframe_split": {"columns": ["a", "b"], "data": [[1]]}}, InvalidInputError, "row 0"),
    ({"dataframe_records": [{"a": 1}, {"b": 2}]}, InvalidInputError, "record 1"),
    ({"dataframe_records": []}, InvalidInputError, "no rows"),
    ({"dataframe_records": [1]}, MalformedRequestError, "list of objects"),
    ({"inputs": {"a": [1, 2], "b": [1]}}, InvalidInputError, "different lengths"),
    ({"inputs": "a"}, MalformedRequestError, "list of records"),
    ({"inputs": {"a": [1]}, "params": 3}, MalformedRequestError, "params"),
])
def test_bad_mlflow_bodies(payload, error, fragment):
    with pytest.raises(error, match=fragment):
        columns_from_mlflow(payload, max_rows=10)


def test_too_many_rows_is_413():
    with pytest.raises(PayloadTooLargeError, match="11 rows exceed the limit of 10"):
        columns_from_records([{"a": i} for i in range(11)], max_rows=10)
    assert PayloadTooLargeError.status == 413


def test_parse_json():
    assert parse_json(b'{"a": 1}') == {"a": 1}
    for body in (b"{", b"NaN", b"", b"\xff"):
        with pytest.raises(MalformedRequestError, match="not valid JSON"):
            parse_json(body)


def test_oip_tensors():
    inputs = [{"name": "a", "datatype": "FP64", "shape": [2, 1], "data": [[1.0], [2.0]]},
              {"name": "b", "datatype": "BYTES", "shape": [2], "data": ["x", "y"]}]
    assert columns_from_oip_inputs(inputs, 10) == {"a": [1.0, 2.0], "b": ["x", "y"]}


@pytest.mark.parametrize(("inputs", "fragment"), [
    (None, "non-empty list"),
    ([{"datatype": "FP64"}], "with a `name`"),
    ([{"name": "a", "shape": [2, 2], "data": [1, 2, 3, 4]}], "shape must be"),
    ([{"name": "a", "shape": [2], "data": [1]}], "holds 2 values but data has 1"),
    ([{"name": "a", "shape": [1], "data": 1}], "must be a list"),
    ([{"name": "a", "shape": [1], "data": [1]}, {"name": "a", "shape": [1], "data": [2]}], "twice"),
])
def test_bad_oip_tensors(inputs, fragment):
    with pytest.raises((InvalidInputError, MalformedRequestError), match=fragment):
        columns_from_oip_inputs(inputs, 10)
