"""Generator: determinism, realism, and the property each scenario exists for."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date

import numpy as np
import pandas as pd
import pytest

from flightdeck.data.generator import (
    DEFECT_KINDS,
    SCENARIOS,
    WRONG_TYPE_COLUMN,
    generate_partition,
    injected_defects,
    write_partitions,
)
from flightdeck.data.schema import (
    CATEGORICAL_FEATURES,
    ENTITY_ID,
    FEATURES,
    LABEL,
    NUMERIC_FEATURES,
    NUMERIC_RANGES,
)
from flightdeck.errors import ConfigError

DAYS = [date(2024, 5, d) for d in (1, 2, 3)]


def _psi(expected: pd.Series, actual: pd.Series, bins: int = 10) -> float:
    """Population stability index: quantile bins of `expected` (categories as bins)."""
    if pd.api.types.is_numeric_dtype(expected):
        edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
        edges[0], edges[-1] = -np.inf, np.inf
        e = np.histogram(expected, edges)[0] / len(expected)
        a = np.histogram(actual, edges)[0] / len(actual)
    else:
        cats = sorted(set(expected) | set(actual))
        e = expected.value_counts(normalize=True).reindex(cats, fill_value=0).to_numpy()
        a = actual.value_counts(normalize=True).reindex(cats, fill_value=0).to_numpy()
    e, a = np.clip(e, 1e-6, None), np.clip(a, 1e-6, None)
    return float(np.sum((a - e) * np.log(a / e)))


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {
        s: pd.concat([generate_partition(d, s) for d in DAYS], ignore_index=True)
        for s in ("clean", "feature_drift", "label_drift")
    }


def test_scenarios_listed():
    assert SCENARIOS == ("clean", "feature_drift", "label_drift", "corrupt")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_same_inputs_give_equal_frames(scenario):
    a = generate_partition(date(2024, 1, 7), scenario, rows=500, seed=3)
    b = generate_partition(date(2024, 1, 7), scenario, rows=500, seed=3)
    pd.testing.assert_frame_equal(a, b)


def test_different_day_or_seed_gives_different_data():
    base = generate_partition(date(2024, 1, 7), rows=300)
    other_day = generate_partition(date(2024, 1, 8), rows=300)
    other_seed = generate_partition(date(2024, 1, 7), rows=300, seed=43)
    for other in (other_day, other_seed):
        assert not set(base[ENTITY_ID]) & set(other[ENTITY_ID])
        assert not np.allclose(base["credit_score"], other["credit_score"])


def test_a_day_is_byte_identical_whichever_range_wrote_it(tmp_path):
    write_partitions(tmp_path / "a", date(2024, 1, 1), date(2024, 1, 3), rows_per_day=200)
    write_partitions(tmp_path / "b", date(2024, 1, 3), date(2024, 1, 5), rows_per_day=200)
    name = "ds=2024-01-03/part-0.parquet"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_determinism_does_not_depend_on_python_hash_seed():
    code = (
        "from datetime import date; import pandas as pd;"
        "from flightdeck.data.generator import generate_partition as g;"
        "print(int(pd.util.hash_pandas_object(g(date(2024, 1, 7), 'label_drift', rows=300)).sum()))"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": salt},
        ).stdout.strip()
        for salt in ("1", "2")
    }
    local = str(
        int(
            pd.util.hash_pandas_object(
                generate_partition(date(2024, 1, 7), "label_drift", rows=300)
            ).sum()
        )
    )
    assert digests == {local}


def test_features_are_correlated_like_bureau_data(frames):
    corr = frames["clean"][list(NUMERIC_FEATURES)].corr()
    assert corr.loc["credit_score", "utilization"] < -0.4
    assert corr.loc["annual_income", "total_credit_limit"] > 0.5
    assert corr.loc["credit_score", "num_delinquencies_2y"] < -0.2


def test_base_rate_between_10_and_20_percent(frames):
    assert 0.10 <= frames["clean"][LABEL].mean() <= 0.20


def test_logistic_regression_reaches_realistic_auc(frames):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    df = frames["clean"]
    train, test = df.iloc[:4000], df.iloc[4000:]
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", StandardScaler(), list(NUMERIC_FEATURES)),
                ("cat", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL_FEATURES)),
            ]
        ),
        LogisticRegression(max_iter=2000),
    )
    model.fit(train[list(FEATURES)], train[LABEL])
    auc = roc_auc_score(test[LABEL], model.predict_proba(test[list(FEATURES)])[:, 1])
    assert 0.75 <= auc <= 0.88


def test_feature_drift_moves_numeric_and_categorical_features(frames):
    clean, drifted = frames["clean"], frames["feature_drift"]
    drifted_numeric = [c for c in NUMERIC_FEATURES if _psi(clean[c], drifted[c]) > 0.2]
    assert {"credit_score", "age"} <= set(drifted_numeric)
    assert len(drifted_numeric) >= 3
    assert _psi(clean["channel"], drifted["channel"]) > 0.2
    assert all(
        _psi(clean[c], generate_partition(date(2024, 6, 1))[c]) < 0.1 for c in drifted_numeric
    )


def test_label_drift_changes_positive_rate_not_features(frames):
    clean, drifted = frames["clean"], frames["label_drift"]
    assert drifted[LABEL].mean() - clean[LABEL].mean() > 0.08
    assert _psi(clean["credit_score"], drifted["credit_score"]) < 0.1
    assert _psi(clean["channel"], drifted["channel"]) < 0.1


@pytest.fixture(scope="module")
def corrupt() -> tuple[pd.DataFrame, pd.DataFrame, dict[int, str]]:
    day = date(2024, 5, 2)
    return generate_partition(day, "corrupt"), generate_partition(day), injected_defects(day)


def test_corrupt_is_clean_plus_seeded_bad_rows(corrupt):
    bad, clean, plan = corrupt
    assert len(plan) == 100  # 5 % of 2000
    assert set(plan.values()) == set(DEFECT_KINDS)
    good = [i for i in range(len(clean)) if i not in plan]
    rest = [c for c in clean.columns if c != WRONG_TYPE_COLUMN]
    pd.testing.assert_frame_equal(bad.iloc[good][rest], clean.iloc[good][rest])
    assert len(injected_defects(date(2024, 5, 2), corrupt_fraction=0.1)) == 200


def test_corrupt_has_a_text_column_with_unparsable_tokens(corrupt):
    bad, clean, plan = corrupt
    assert pd.api.types.is_string_dtype(bad[WRONG_TYPE_COLUMN])
    numbers = pd.to_numeric(bad[WRONG_TYPE_COLUMN], errors="coerce")
    unparsable = set(np.flatnonzero(bad[WRONG_TYPE_COLUMN].notna() & numbers.isna()))
    assert unparsable == {p for p, k in plan.items() if k == "wrong_type"}
    good = [i for i in range(len(clean)) if i not in plan]
    np.testing.assert_array_equal(numbers.iloc[good], clean[WRONG_TYPE_COLUMN].iloc[good])


def test_corrupt_has_nulls_out_of_range_and_duplicates(corrupt):
    bad, _, plan = corrupt
    rows = lambda kind: [p for p, k in plan.items() if k == kind]  # noqa: E731
    assert all(bad.iloc[p][list(FEATURES)].isna().any() for p in rows("null"))
    numbers = bad.assign(
        **{WRONG_TYPE_COLUMN: pd.to_numeric(bad[WRONG_TYPE_COLUMN], errors="coerce")}
    )
    outside = pd.concat(
        [
            ~numbers[c].between(lo, hi) & numbers[c].notna()
            for c, (lo, hi) in NUMERIC_RANGES.items()
        ],
        axis=1,
    ).any(axis=1)
    assert outside.iloc[rows("out_of_range")].mean() > 0.5  # the rest are unknown categories
    assert (numbers["age"] < 0).any() or (numbers["age"] > 100).any()
    dup = bad[ENTITY_ID].duplicated(keep="first")
    assert set(np.flatnonzero(dup)) == set(rows("duplicate_id"))


def test_unknown_scenario_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        generate_partition(date(2024, 1, 1), "chaos")
    assert err.value.name == "scenario"
    assert all(s in err.value.fix for s in SCENARIOS)


def test_write_partitions_writes_each_day_inclusive(tmp_path):
    paths = write_partitions(tmp_path, date(2024, 2, 27), date(2024, 3, 1), rows_per_day=50)
    assert [p.name for p in paths] == [
        "ds=2024-02-27",
        "ds=2024-02-28",
        "ds=2024-02-29",
        "ds=2024-03-01",
    ]
    assert all((p / "part-0.parquet").is_file() for p in paths)


def test_write_partitions_rejects_reversed_window(tmp_path):
    with pytest.raises(ConfigError) as err:
        write_partitions(tmp_path, date(2024, 3, 2), date(2024, 3, 1))
    assert err.value.name == "start" and "end" in err.value.problem
    assert not any(tmp_path.iterdir())


def test_airflow_ds_string_is_the_same_day():
    pd.testing.assert_frame_equal(
        generate_partition("2024-01-07", rows=50), generate_partition(date(2024, 1, 7), rows=50)
    )
    assert injected_defects("2024-01-07") == injected_defects(date(2024, 1, 7))
