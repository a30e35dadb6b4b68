"""The Great Expectations suite for raw partitions and a report that names every bad row.

`validate_raw` runs the GX 1.x suite `raw_features` on a frame and turns the result into a
`ValidationReport`: which expectations failed, how many rows each, and — for quarantine —
the reasons of every bad row by position. Two checks are completed here because GX does
not give row positions for them:

* wrong types: a numeric column stored as text gets a row reason for every value
  `pandas.to_numeric` cannot parse, and its range check runs on the parsable values;
* duplicated ids: the first occurrence of an id is kept, later ones are bad rows (GX flags
  all of them, which would quarantine the good original too).

GX takes seconds to import, so it is imported on first use and its ephemeral context is
built once per process; importing this module stays cheap.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from flightdeck.data.schema import (
    CATEGORICAL_FEATURES,
    CATEGORY_VALUES,
    ENTITY_ID,
    EVENT_TIME,
    FEATURES,
    LABEL,
    LABEL_TIME,
    NUMERIC_FEATURES,
    NUMERIC_RANGES,
    RAW_COLUMNS,
)

# GX logs hundreds of INFO lines about its own docs registry on import; keep task logs readable.
logging.getLogger("great_expectations").setLevel(logging.WARNING)

if TYPE_CHECKING:
    import great_expectations as gx

SUITE_NAME = "raw_features"
NUMERIC_TYPES = ("float64", "float32", "int64", "int32", "Float64", "Int64")
"""dtypes accepted for a numeric feature (clean data uses float64)."""

_NOT_NULL = "expect_column_values_to_not_be_null"
_BETWEEN = "expect_column_values_to_be_between"
_IN_SET = "expect_column_values_to_be_in_set"
_IN_TYPES = "expect_column_values_to_be_in_type_list"
_UNIQUE = "expect_column_values_to_be_unique"
_PAIR_GT = "expect_column_pair_values_a_to_be_greater_than_b"


@dataclass(frozen=True)
class ExpectationFailure:
    """One failed expectation.

    Attributes:
        expectation: GX expectation type, e.g. "expect_column_values_to_not_be_null".
        column: The column it checks, None for table-level expectations.
        unexpected_count: Rows this failure marks as bad (0 for table-level failures).
        detail: Short human text, e.g. "3 value(s) outside [18, 100], e.g. -3".
    """

    expectation: str
    column: str | None
    unexpected_count: int
    detail: str


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of validating one data set against the raw suite.

    Attributes:
        name: The data set, e.g. "raw ds=2024-01-02".
        success: True when every expectation held.
        n_rows: Rows validated.
        n_expectations: Expectations evaluated.
        failures: One entry per failed expectation.
        bad_rows: Row position (0..n_rows-1) -> reasons, e.g. ["age: out of range [18, 100] (-3)"].
    """

    name: str
    success: bool
    n_rows: int
    n_expectations: int
    failures: list[ExpectationFailure] = field(default_factory=list)
    bad_rows: dict[int, list[str]] = field(default_factory=dict)

    @property
    def bad_fraction(self) -> float:
        """Share of rows with at least one reason."""
        return len(self.bad_rows) / self.n_rows if self.n_rows else 0.0

    def summary(self) -> str:
        """Multi-line text naming the data set and each failed expectation with its row count."""
        status = "passed" if self.success else "FAILED"
        lines = [
            f"{self.name}: {SUITE_NAME} {status} — {len(self.failures)} of {self.n_expectations} "
            f"expectations failed; {len(self.bad_rows)} of {self.n_rows} rows bad ({self.bad_fraction:.1%})."
        ]
        for f in self.failures:
            where = f"[{f.column}]" if f.column else "[table]"
            lines.append(
                f"  - {f.expectation} {where}: {f.unexpected_count} bad row(s) — {f.detail}"
            )
        return "\n".join(lines)


def build_raw_suite() -> gx.ExpectationSuite:
    """The `raw_features` suite: the contract of `schema` expressed as GX expectations."""
    import great_expectations as gx

    return gx.ExpectationSuite(name=SUITE_NAME, expectations=_raw_expectations())


def validate_raw(df: pd.DataFrame, name: str) -> ValidationReport:
    """Validate raw rows against `raw_features` and explain every failure and bad row.

    Args:
        df: Raw rows (any index; positions are reported, 0..len-1).
        name: Names the data set in the report, e.g. "raw ds=2024-01-02".

    Returns:
        The report. Raise `flightdeck.errors.DataValidationError(report)` to fail a task.
    """
    frame = df.reset_index(drop=True)  # GX reports index labels; make them positions
    mistyped = [
        c
        for c in NUMERIC_FEATURES
        if c in frame.columns and not pd.api.types.is_numeric_dtype(frame[c])
    ]
    parsed = {c: pd.to_numeric(frame[c], errors="coerce") for c in mistyped}

    # A missing column is reported once, by the column-set expectation; checks of it
    # would only raise "column does not exist".
    expectations = [e for e in _raw_expectations() if _columns_of(e) <= set(frame.columns)]
    # Range checks of a text column run on its parsable values; all else on the raw frame.
    on_parsed, on_raw = _split(expectations, lambda e: _is_range_check_of(e, mistyped))
    results = _run(frame, on_raw)
    if on_parsed:
        results += _run(frame.assign(**parsed), on_parsed)
    # Report in suite order, whichever run evaluated an expectation.
    order = {_key(e.expectation_type, vars(e)): i for i, e in enumerate(expectations)}
    results.sort(
        key=lambda r: order.get(_key(r.expectation_config.type, r.expectation_config.kwargs), 0)
    )

    bad_rows: dict[int, list[str]] = defaultdict(list)
    failures = []
    for result in results:
        failure = _explain(result, frame, parsed, bad_rows)
        if failure is not None:
            failures.append(failure)
    return ValidationReport(
        name=name,
        success=not failures,
        n_rows=len(frame),
        n_expectations=len(results),
        failures=failures,
        bad_rows={pos: bad_rows[pos] for pos in sorted(bad_rows)},
    )


def _raw_expectations() -> list[Any]:
    """Fresh expectation objects (a GX expectation belongs to at most one suite)."""
    import great_expectations as gx

    e = gx.expectations
    exps: list[Any] = [
        e.ExpectTableColumnsToMatchSet(column_set=list(RAW_COLUMNS), exact_match=True),
        e.ExpectTableRowCountToBeBetween(min_value=1, max_value=None),
        e.ExpectColumnValuesToBeUnique(column=ENTITY_ID),
        e.ExpectColumnValuesToBeInSet(column=LABEL, value_set=[0, 1]),
        e.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=LABEL_TIME, column_B=EVENT_TIME, or_equal=False
        ),
    ]
    exps += [e.ExpectColumnValuesToNotBeNull(column=c) for c in (ENTITY_ID, EVENT_TIME, *FEATURES)]
    for column in NUMERIC_FEATURES:
        low, high = NUMERIC_RANGES[column]
        exps.append(
            e.ExpectColumnValuesToBeInTypeList(column=column, type_list=list(NUMERIC_TYPES))
        )
        exps.append(e.ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high))
    exps += [
        e.ExpectColumnValuesToBeInSet(column=c, value_set=list(CATEGORY_VALUES[c]))
        for c in CATEGORICAL_FEATURES
    ]
    return exps


def _key(kind: str, kwargs: dict[str, Any]) -> tuple[str, Any, Any]:
    return kind, kwargs.get("column"), kwargs.get("column_A")


def _columns_of(expectation: Any) -> set[str]:
    names = (getattr(expectation, a, None) for a in ("column", "column_A", "column_B"))
    return {n for n in names if n is not None}


def _is_range_check_of(expectation: Any, columns: Sequence[str]) -> bool:
    return (
        expectation.expectation_type == _BETWEEN and getattr(expectation, "column", None) in columns
    )


def _split(items: list[Any], pred) -> tuple[list[Any], list[Any]]:
    yes = [i for i in items if pred(i)]
    no = [i for i in items if not pred(i)]
    return yes, no


_CONTEXT_LOCK = threading.Lock()


@functools.cache
def _batch_definition() -> Any:
    """One ephemeral context per process with a whole-dataframe batch definition."""
    # GX reads this on import in some versions; 1.24 has no telemetry left, set it anyway.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    with _CONTEXT_LOCK:
        context = gx.get_context(mode="ephemeral")
        context.enable_analytics(False)
        # tqdm bars would spam every Airflow task log.
        context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        asset = context.data_sources.add_pandas("flightdeck").add_dataframe_asset("raw")
        return asset.add_batch_definition_whole_dataframe("whole")


def _run(frame: pd.DataFrame, expectations: list[Any]) -> list[Any]:
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=SUITE_NAME, expectations=expectations)
    batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
    # COMPLETE: every unexpected index, needed to quarantine rows; no query strings/rows.
    result_format = {"result_format": "COMPLETE", "return_unexpected_index_query": False}
    return list(batch.validate(suite, result_format=result_format).results)


def _explain(
    result: Any,
    frame: pd.DataFrame,
    parsed: dict[str, pd.Series],
    bad_rows: dict[int, list[str]],
) -> ExpectationFailure | None:
    """Turn one GX result into a failure (or None) and add its row reasons to `bad_rows`."""
    config = result.expectation_config
    kind, kwargs = config.type, config.kwargs
    column = kwargs.get("column")
    error = _exception_message(result.exception_info or {})
    if error is not None:
        return ExpectationFailure(kind, column, 0, f"could not be evaluated: {error}")

    if result.success:
        return None
    if kind == _IN_TYPES and column in parsed:
        return _explain_wrong_type(column, frame[column], parsed[column], bad_rows)
    out = result.result or {}

    if kind == _UNIQUE:
        return _explain_duplicates(column, frame[column], bad_rows)
    if kind == _PAIR_GT:
        positions = _positions(out)
        for pos in positions:
            bad_rows[pos].append(f"{LABEL_TIME}: not after {EVENT_TIME}")
        return ExpectationFailure(
            kind,
            LABEL_TIME,
            len(positions),
            f"{len(positions)} label time(s) not after the event time",
        )
    if kind in (_NOT_NULL, _BETWEEN, _IN_SET):
        values = parsed.get(column, frame[column])
        positions = _positions(out)
        reason = _row_reason(kind, column, kwargs)
        for pos in positions:
            bad_rows[pos].append(
                f"{reason} ({_show(values.iat[pos])})" if kind != _NOT_NULL else reason
            )
        example = (
            f", e.g. {_show(values.iat[positions[0]])}" if positions and kind != _NOT_NULL else ""
        )
        what = reason.split(": ", 1)[1]
        return ExpectationFailure(
            kind, column, len(positions), f"{len(positions)} value(s) {what}{example}"
        )
    # Table-level (column set, row count) and the aggregate type check of a numeric dtype.
    return ExpectationFailure(kind, column, 0, _table_detail(kind, out))


def _row_reason(kind: str, column: str, kwargs: dict[str, Any]) -> str:
    if kind == _NOT_NULL:
        return f"{column}: missing"
    if kind == _BETWEEN:
        return f"{column}: out of range [{kwargs['min_value']:.10g}, {kwargs['max_value']:.10g}]"
    return f"{column}: not an allowed value"


def _explain_wrong_type(
    column: str, raw: pd.Series, numbers: pd.Series, bad_rows: dict[int, list[str]]
) -> ExpectationFailure:
    unparsable = raw.notna() & numbers.isna()
    positions = [int(p) for p in unparsable.to_numpy().nonzero()[0]]
    for pos in positions:
        bad_rows[pos].append(f"{column}: not a number ({raw.iat[pos]!r})")
    example = f", e.g. {raw.iat[positions[0]]!r}" if positions else ""
    return ExpectationFailure(
        _IN_TYPES,
        column,
        len(positions),
        f"stored as {raw.dtype}, not a number type; {len(positions)} value(s) do not parse as numbers{example}",
    )


def _explain_duplicates(
    column: str, ids: pd.Series, bad_rows: dict[int, list[str]]
) -> ExpectationFailure:
    repeated = ids.duplicated(keep="first") & ids.notna()
    positions = [int(p) for p in repeated.to_numpy().nonzero()[0]]
    for pos in positions:
        bad_rows[pos].append(f"{column}: duplicated ({ids.iat[pos]!r} seen in an earlier row)")
    n_ids = ids[repeated].nunique()
    return ExpectationFailure(
        _UNIQUE,
        column,
        len(positions),
        f"{n_ids} id(s) appear more than once; {len(positions)} later occurrence(s) are bad rows",
    )


def _exception_message(info: dict[str, Any]) -> str | None:
    # GX gives either one {"raised_exception": …} dict or one per failed metric.
    infos = (
        [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    )
    for item in infos:
        if item.get("raised_exception"):
            return (str(item.get("exception_message") or "error").splitlines() or ["error"])[0][
                :200
            ]
    return None


def _positions(result: dict[str, Any]) -> list[int]:
    # With a RangeIndex the unexpected index labels are row positions.
    return sorted(int(i) for i in result.get("unexpected_index_list") or [])


def _show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return f"{value:.0f}"
    return repr(value) if isinstance(value, str) else str(value)


def _table_detail(kind: str, result: dict[str, Any]) -> str:
    if kind == "expect_table_columns_to_match_set":
        mismatched = (result.get("details") or {}).get("mismatched") or {}
        missing = mismatched.get("missing") or []
        extra = mismatched.get("unexpected") or []
        return f"missing columns {sorted(missing)}, unexpected columns {sorted(extra)}"
    if kind == "expect_table_row_count_to_be_between":
        return f"{result.get('observed_value')} rows, need at least 1"
    return f"observed {result.get('observed_value')!r}"
