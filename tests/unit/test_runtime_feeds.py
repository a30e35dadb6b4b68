"""The gateway's feed builder (decoded JSON columns) agrees with the DataFrame path and is strict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flightdeck import runtime
from tests.support.models import onnx_model, records


@pytest.fixture(scope="module")
def session():
    return runtime.load_session(onnx_model(1))


def _columns(rows):
    return {name: [r[name] for r in rows] for name in rows[0]}


def test_same_scores_as_the_dataframe_path(session):
    rows = records(50)
    from_columns = runtime.score_feeds(session, runtime.feeds_from_columns(session, _columns(rows)))
    np.testing.assert_array_equal(from_columns, runtime.score(session, pd.DataFrame(rows)))


@pytest.mark.parametrize(("change", "fragment"), [
    (lambda c: c.pop("annual_income"), "missing column"),
    (lambda c: c.__setitem__("annual_income", [None]), "missing or non-finite"),
    (lambda c: c.__setitem__("annual_income", ["12"]), "must be numeric"),
    (lambda c: c.__setitem__("annual_income", [True]), "must be numeric"),
    (lambda c: c.__setitem__("annual_income", [[1.0]]), "flat list"),
    (lambda c: c.__setitem__("annual_income", [float("inf")]), "non-finite"),
    (lambda c: c.__setitem__("annual_income", [{"x": 1}]), "must be numeric"),
])
def test_bad_numeric_input(session, change, fragment):
    columns = _columns(records(1))
    change(columns)
    with pytest.raises(runtime.InvalidInputError, match=fragment):
        runtime.feeds_from_columns(session, columns)


def test_categorical_takes_strings_only(session):
    columns = _columns(records(1))
    name = next(i.name for i in session.get_inputs() if i.type == "tensor(string)")
    columns[name] = [3]
    with pytest.raises(runtime.InvalidInputError, match="strings only"):
        runtime.feeds_from_columns(session, columns)
    columns[name] = ["a-category-never-seen"]  # unknown categories score (one-hot ignores them)
    assert runtime.score_feeds(session, runtime.feeds_from_columns(session, columns)).shape == (1,)
