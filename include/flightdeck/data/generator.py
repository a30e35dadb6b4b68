"""Deterministic synthetic consumer-credit applications: will the customer default within 60 days?

Features come from two hidden traits per customer — financial health and behavioural
risk — so they correlate the way real bureau data does (income with credit limit and
savings, risk with utilisation, delinquencies and inquiries, score with both). The label
comes from a ground-truth logistic model with hinges, a U-shape in age and interactions,
so a linear model learns most but not all of it.

Every partition is a pure function of (ds, scenario, rows, seed): the random streams are
derived with numpy's SeedSequence from those values, never from Python's salted hash(),
so a day is byte-identical whichever range it was generated in.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from flightdeck.data.layout import as_date
from flightdeck.data.partitions import write_partition_atomically
from flightdeck.data.schema import (
    CATEGORY_VALUES,
    ENTITY_ID,
    EVENT_TIME,
    FEATURES,
    LABEL,
    LABEL_TIME,
    NUMERIC_FEATURES,
    RAW_COLUMNS,
)
from flightdeck.errors import ConfigError

SCENARIOS = ("clean", "feature_drift", "label_drift", "corrupt")

DEFECT_KINDS = ("null", "wrong_type", "out_of_range", "duplicate_id")
"""Kinds of bad rows in a `corrupt` partition, see `injected_defects`."""

WRONG_TYPE_COLUMN = "annual_income"
"""The numeric column stored as text in `corrupt` partitions."""

_WRONG_TYPE_TOKENS = ("n/a", "unknown", "?", "#VALUE!", "missing")
_OUT_OF_RANGE_VALUES: tuple[tuple[str, float | str], ...] = (
    ("age", -3.0),
    ("age", 150.0),
    ("credit_score", 2000.0),
    ("utilization", 7.5),
    ("debt_to_income", -0.2),
    ("num_open_accounts", -1.0),
    ("annual_income", "-5000"),  # parsable text, out of range: checks the coerced values
    ("channel", "fax"),
)
_US_PER_DAY = 86_400 * 1_000_000


@dataclass(frozen=True)
class _Scenario:
    """How a scenario bends the clean process. Zero/None means 'as clean'."""

    fin_shift: float = 0.0  # mean of the financial-health trait
    risk_shift: float = 0.0  # mean of the behavioural-risk trait
    age_shift: float = 0.0
    channel_probs: tuple[float, ...] | None = None  # branch, online, mobile, broker
    intercept_shift: float = 0.0  # label model
    utilization_weight: float = 1.0  # label model: concept drift on one driver


_SCENARIOS: dict[str, _Scenario] = {
    "clean": _Scenario(),
    # A younger, thinner-file, mobile-first population (e.g. a new marketing partner).
    "feature_drift": _Scenario(
        fin_shift=-0.6, risk_shift=0.5, age_shift=-8.0, channel_probs=(0.04, 0.2, 0.66, 0.1)
    ),
    # Same applicants, worse economy: more defaults and utilisation matters more.
    "label_drift": _Scenario(intercept_shift=0.9, utilization_weight=1.8),
    "corrupt": _Scenario(),
}


def generate_partition(
    ds: date | str,
    scenario: str = "clean",
    rows: int = 2000,
    seed: int = 42,
    *,
    corrupt_fraction: float = 0.05,
) -> pd.DataFrame:
    """Generate one day of raw applications, columns in `schema.RAW_COLUMNS` order.

    Args:
        ds: The day (or "YYYY-MM-DD"); event times fall inside it (UTC).
        scenario: One of `SCENARIOS`.
        rows: Number of rows.
        seed: Base seed; with ds and scenario it fixes every value.
        corrupt_fraction: Share of bad rows in the `corrupt` scenario (see `injected_defects`).

    Raises:
        ConfigError: Unknown scenario or a parameter out of its range.
    """
    ds = as_date(ds)
    _check_args(scenario, rows, seed, corrupt_fraction)
    if scenario == "corrupt":
        # Corrupt = the clean day plus damage, so its good rows equal the clean rows.
        df = _generate(ds, "clean", rows, seed)
        return _corrupt(df, _corruption_rng(ds, seed), corrupt_fraction)
    return _generate(ds, scenario, rows, seed)


def injected_defects(
    ds: date | str, rows: int = 2000, seed: int = 42, corrupt_fraction: float = 0.05
) -> dict[int, str]:
    """Which rows of the `corrupt` partition for these arguments were damaged, and how.

    Returns:
        Row position -> one of `DEFECT_KINDS`. A `duplicate_id` row copies the id of an
        earlier clean row, so only the later occurrence is bad.
    """
    _check_args("corrupt", rows, seed, corrupt_fraction)
    return _plan_defects(_corruption_rng(as_date(ds), seed), rows, corrupt_fraction)


def write_partitions(
    root: str | os.PathLike[str],
    start: date | str,
    end: date | str,
    scenario: str = "clean",
    rows_per_day: int = 2000,
    seed: int = 42,
    *,
    corrupt_fraction: float = 0.05,
) -> list[Path]:
    """Generate and atomically write one partition per day from `start` to `end` inclusive.

    Returns:
        The partition folders, in date order.

    Raises:
        ConfigError: `start` is after `end`, or a generator argument is invalid.
    """
    start, end = as_date(start), as_date(end)
    if start > end:
        raise ConfigError(
            "start", f"start {start} is after end {end}", "pass start <= end (both inclusive)"
        )
    _check_args(scenario, rows_per_day, seed, corrupt_fraction)
    paths = []
    for offset in range((end - start).days + 1):
        ds = start + timedelta(days=offset)
        df = generate_partition(ds, scenario, rows_per_day, seed, corrupt_fraction=corrupt_fraction)
        paths.append(write_partition_atomically(df, root, ds))
    return paths


def _check_args(scenario: str, rows: int, seed: int, corrupt_fraction: float) -> None:
    if scenario not in SCENARIOS:
        raise ConfigError(
            "scenario", f"unknown scenario {scenario!r}", f"use one of {', '.join(SCENARIOS)}"
        )
    if rows < 1:
        raise ConfigError("rows", f"{rows} rows requested", "ask for at least 1 row")
    if seed < 0:
        raise ConfigError("seed", f"negative seed {seed}", "use a seed >= 0")
    if not 0.0 <= corrupt_fraction <= 1.0:
        raise ConfigError(
            "corrupt_fraction",
            f"{corrupt_fraction} is not a fraction",
            "use 0 <= corrupt_fraction <= 1",
        )


def _seed_sequence(ds: date, scenario: str, seed: int) -> np.random.SeedSequence:
    # crc32, not hash(): str hashes are salted per process.
    return np.random.SeedSequence([seed, ds.toordinal(), zlib.crc32(scenario.encode())])


def _corruption_rng(ds: date, seed: int) -> np.random.Generator:
    return np.random.default_rng(_seed_sequence(ds, "corrupt", seed))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _pick(rng: np.random.Generator, values: tuple[str, ...], probs: np.ndarray) -> np.ndarray:
    """Draw one category per row from row-wise probabilities (n x k, rows sum to 1)."""
    cum = np.cumsum(probs, axis=1)
    idx = (rng.random((probs.shape[0], 1)) > cum).sum(axis=1)
    return np.asarray(values, dtype=object)[np.minimum(idx, len(values) - 1)]


def _generate(ds: date, scenario: str, rows: int, seed: int) -> pd.DataFrame:
    spec = _SCENARIOS[scenario]
    # Separate streams for ids/times, features and labels: changing one part of the
    # process does not reshuffle the others.
    id_rng, feat_rng, label_rng = (
        np.random.default_rng(s) for s in _seed_sequence(ds, scenario, seed).spawn(3)
    )
    df = _features(feat_rng, rows, spec)
    label = _labels(label_rng, df, spec)

    day_start = datetime(ds.year, ds.month, ds.day, tzinfo=UTC)
    ids = id_rng.choice(10**10, size=rows, replace=False)
    offsets = np.sort(id_rng.integers(0, _US_PER_DAY, size=rows))
    # The label delay does not depend on the label, so filtering on arrival keeps the base rate.
    delays = id_rng.integers(7 * _US_PER_DAY, 60 * _US_PER_DAY + 1, size=rows)
    start = pd.Timestamp(day_start).as_unit("us")
    event_time = start + pd.to_timedelta(offsets, unit="us")

    df.insert(0, ENTITY_ID, pd.array([f"C{i:010d}" for i in ids], dtype="str"))
    df.insert(1, EVENT_TIME, event_time)
    df[LABEL] = label.astype("int64")
    df[LABEL_TIME] = event_time + pd.to_timedelta(delays, unit="us")
    return df[list(RAW_COLUMNS)]


def _features(rng: np.random.Generator, n: int, spec: _Scenario) -> pd.DataFrame:
    normal = rng.standard_normal
    fin = normal(n) + spec.fin_shift  # financial health
    risk = -0.4 * (fin - spec.fin_shift) + np.sqrt(1 - 0.16) * normal(n) + spec.risk_shift

    age = np.clip(np.round(rng.normal(43 + spec.age_shift, 13, n)), 18, 85)

    # Education follows financial health through an ordered latent variable.
    edu_latent = 0.6 * fin + 0.8 * normal(n)
    edu_idx = np.searchsorted(np.array([-0.4, 0.1, 1.0, 1.9]), edu_latent)
    education = np.asarray(CATEGORY_VALUES["education"], dtype=object)[edu_idx]

    emp_probs = np.tile([0.6, 0.12, 0.1, 0.06, 0.06, 0.06], (n, 1))
    employment = _pick(rng, CATEGORY_VALUES["employment_type"], emp_probs)
    u = rng.random(n)
    employment = np.where((age >= 63) & (u < 0.7), "retired", employment)
    employment = np.where((age < 25) & (u < 0.35), "student", employment)
    employment = np.where((age < 50) & (employment == "retired"), "salaried", employment)
    employment = np.where((age >= 35) & (employment == "student"), "unemployed", employment)

    edu_bonus = np.array([-0.15, -0.05, 0.1, 0.25, 0.4])[edu_idx]
    emp_effect = (
        pd.Series(employment)
        .map(
            {
                "salaried": 0.0,
                "self_employed": 0.1,
                "contractor": 0.0,
                "unemployed": -1.0,
                "retired": -0.4,
                "student": -1.1,
            }
        )
        .to_numpy(dtype=float)
    )
    age_curve = 0.35 * np.clip(1 - ((age - 50) / 30) ** 2, -1, 1)
    log_income = 10.75 + 0.28 * fin + edu_bonus + emp_effect + age_curve + 0.3 * normal(n)
    income = np.maximum(np.round(np.exp(log_income), -2), 3000.0)

    working = np.isin(employment, ["salaried", "self_employed", "contractor"])
    emp_years = np.where(working, np.minimum(age - 18, np.round(rng.gamma(2.0, 3.5, n))), 0.0)

    p_home = _sigmoid(-2.6 + 0.07 * (age - 18) + 0.6 * (log_income - 10.75))
    owner = rng.random(n) < p_home
    outright = rng.random(n) < _sigmoid(0.1 * (age - 58))
    renter_other = rng.random(n) < 0.15
    housing = np.where(
        owner, np.where(outright, "own", "mortgage"), np.where(renter_other, "other", "rent")
    )
    dependents = np.clip(rng.poisson(np.where((age > 25) & (age < 55), 1.3, 0.3)), 0, 8).astype(
        float
    )

    region = _pick(rng, CATEGORY_VALUES["region"], np.tile([0.22, 0.2, 0.2, 0.18, 0.2], (n, 1)))
    if spec.channel_probs is None:
        # Older applicants go to branches, younger ones use the app.
        logits = np.column_stack(
            [0.04 * (age - 45), np.zeros(n), -0.05 * (age - 45), np.full(n, -1.2)]
        )
        chan_probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    else:
        chan_probs = np.tile(spec.channel_probs, (n, 1))
    channel = _pick(rng, CATEGORY_VALUES["channel"], chan_probs)
    young = (age < 30)[:, None]
    prod_probs = np.where(young, [0.3, 0.35, 0.1, 0.25], [0.36, 0.34, 0.2, 0.1])
    product = _pick(rng, CATEGORY_VALUES["product"], prod_probs)

    oldest = np.clip(
        np.round((age - 18) * 12 * rng.beta(2.0, 1.5, n) + rng.integers(0, 12, n)), 0, 900
    )
    open_accounts = np.clip(
        rng.poisson(np.exp(1.0 + 0.2 * fin + 0.012 * (age - 40))) + 1, 0, 40
    ).astype(float)
    credit_limit = np.round(
        income * np.exp(-1.2 + 0.35 * fin + 0.05 * open_accounts + 0.3 * normal(n)), -2
    )
    utilization = np.clip(
        np.round(1.08 * _sigmoid(-1.0 + 0.9 * risk - 0.3 * fin + 0.5 * normal(n)), 4), 0, 1.2
    )
    revolving = np.round(utilization * credit_limit, 2)
    delinquencies = np.clip(rng.poisson(np.exp(-1.9 + 0.9 * risk)), 0, 20).astype(float)
    older_delinquency = rng.random(n) < _sigmoid(-1.5 + 0.6 * risk)
    months_since_delinq = np.where(
        delinquencies > 0,
        rng.integers(0, 24, n),
        np.where(older_delinquency, rng.integers(24, 180, n), 240),
    ).astype(float)
    inquiries = np.clip(
        rng.poisson(np.exp(0.0 + 0.45 * risk + 0.3 * (product == "bnpl"))), 0, 25
    ).astype(float)
    score = (
        690
        + 45 * fin
        - 40 * risk
        - 25 * np.minimum(delinquencies, 3)
        + 0.7 * (age - 43)
        + 0.02 * oldest
        - 25 * (utilization - 0.3)
        + 20 * normal(n)
    )
    credit_score = np.clip(np.round(score), 300, 850)
    savings = np.round(
        np.exp(log_income - 1.5 + 0.6 * fin + 0.02 * (age - 43) + 0.8 * normal(n)), -2
    )

    loan_base = (
        pd.Series(product)
        .map({"personal_loan": 9.2, "credit_card": 8.3, "auto_loan": 9.9, "bnpl": 6.4})
        .to_numpy(dtype=float)
    )
    loan_amount = np.clip(
        np.round(np.exp(loan_base + 0.3 * (log_income - 10.75) + 0.5 * normal(n)), -1), 500, 150_000
    )
    term = np.select(
        [product == "personal_loan", product == "credit_card", product == "auto_loan"],
        [rng.choice([12, 24, 36, 48, 60], n), np.full(n, 12), rng.choice([36, 48, 60, 72, 84], n)],
        rng.choice([3, 6], n),
    ).astype(float)
    base_rate = (
        pd.Series(product)
        .map({"personal_loan": 0.09, "credit_card": 0.19, "auto_loan": 0.06, "bnpl": 0.0})
        .to_numpy(dtype=float)
    )
    premium = 0.12 * np.clip((720 - credit_score) / 300, 0, None) + 0.01 * normal(n)
    rate = np.where(product == "bnpl", 0.0, np.clip(np.round(base_rate + premium, 4), 0.01, 0.36))
    monthly_rate = rate / 12
    with np.errstate(divide="ignore", invalid="ignore"):
        annuity = loan_amount * monthly_rate / (1 - (1 + monthly_rate) ** -term)
    payment = np.round(np.where(monthly_rate > 0, annuity, loan_amount / term), 2)
    housing_cost = np.where(housing == "mortgage", 0.2 * income * np.exp(0.2 * normal(n)), 0.0)
    dti = np.clip(np.round((12 * payment + 0.36 * revolving + housing_cost) / income, 4), 0, 2.5)

    numeric = {
        "age": age,
        "annual_income": income,
        "credit_score": credit_score,
        "debt_to_income": dti,
        "utilization": utilization,
        "num_open_accounts": open_accounts,
        "months_since_last_delinquency": months_since_delinq,
        "num_delinquencies_2y": delinquencies,
        "num_credit_inquiries_6m": inquiries,
        "months_since_oldest_account": oldest,
        "total_credit_limit": credit_limit,
        "revolving_balance": revolving,
        "employment_length_years": emp_years,
        "num_dependents": dependents,
        "savings_balance": savings,
        "loan_amount": loan_amount,
        "loan_term_months": term,
        "interest_rate": rate,
        "monthly_payment": payment,
    }
    categorical = {
        "region": region,
        "channel": channel,
        "employment_type": employment,
        "housing": housing,
        "product": product,
        "education": education,
    }
    columns = {c: np.asarray(numeric[c], dtype="float64") for c in NUMERIC_FEATURES}
    columns |= {c: pd.array(categorical[c].astype(str), dtype="str") for c in CATEGORY_VALUES}
    return pd.DataFrame(columns)[list(FEATURES)]


def _labels(rng: np.random.Generator, df: pd.DataFrame, spec: _Scenario) -> np.ndarray:
    """Ground truth: P(default within 60 days) from a logistic model with non-linear terms."""
    f = {c: df[c].to_numpy() for c in NUMERIC_FEATURES}
    cat = {c: df[c].to_numpy(dtype=object) for c in CATEGORY_VALUES}
    monthly_income = f["annual_income"] / 12
    months_of_cover = f["savings_balance"] / monthly_income
    self_employed = cat["employment_type"] == "self_employed"
    logit = (
        -3.9
        + spec.intercept_shift
        - 0.9 * (f["credit_score"] - 680) / 70
        + spec.utilization_weight
        * (1.0 * f["utilization"] + 3.0 * np.maximum(f["utilization"] - 0.8, 0))
        + 0.6 * f["debt_to_income"]
        + 2.0 * np.maximum(f["debt_to_income"] - 0.45, 0)
        + 0.35 * np.minimum(f["num_delinquencies_2y"], 4)
        + 0.5 * (f["months_since_last_delinquency"] < 12)
        + 0.12 * f["num_credit_inquiries_6m"]
        + 0.35 * ((f["age"] - 45) / 15) ** 2
        - 0.3 * np.log1p(months_of_cover)
        + 4.0 * f["interest_rate"]
        + 1.0 * self_employed * f["debt_to_income"]
        + pd.Series(cat["employment_type"])
        .map({"unemployed": 0.8, "student": 0.4, "self_employed": 0.2})
        .fillna(0.0)
        .to_numpy()
        + 0.3 * (cat["product"] == "bnpl")
        + 0.5 * ((cat["product"] == "bnpl") & (f["age"] < 25))
        + 0.25 * (cat["channel"] == "broker")
        + 0.1 * (cat["region"] == "south")
    )
    # Life events the bureau cannot see (job loss, illness) cap how well anyone can predict.
    logit = logit + 1.1 * rng.standard_normal(len(df))
    return (rng.random(len(df)) < _sigmoid(logit)).astype("int64")


def _plan_defects(rng: np.random.Generator, rows: int, fraction: float) -> dict[int, str]:
    n_bad = min(int(round(rows * fraction)), rows - 1)
    if n_bad <= 0:
        return {}
    # Row 0 stays clean so every duplicate has an earlier clean row to copy.
    positions = np.sort(rng.choice(np.arange(1, rows), size=n_bad, replace=False))
    kinds = rng.permutation(np.resize(np.array(DEFECT_KINDS), n_bad))
    return {int(p): str(k) for p, k in zip(positions, kinds, strict=True)}


def _corrupt(df: pd.DataFrame, rng: np.random.Generator, fraction: float) -> pd.DataFrame:
    plan = _plan_defects(rng, len(df), fraction)
    df = df.copy()
    # Upstream exported this column as text: mostly numbers, some tokens (wrong type).
    text = df[WRONG_TYPE_COLUMN].astype(str).astype(object)
    df[WRONG_TYPE_COLUMN] = text
    clean_positions = np.array(sorted(set(range(len(df))) - set(plan)))
    col_pos = {c: df.columns.get_loc(c) for c in df.columns}
    for pos, kind in plan.items():
        if kind == "null":
            for column in rng.choice(FEATURES, size=int(rng.integers(1, 3)), replace=False):
                df.iat[pos, col_pos[column]] = None
        elif kind == "wrong_type":
            df.iat[pos, col_pos[WRONG_TYPE_COLUMN]] = str(rng.choice(_WRONG_TYPE_TOKENS))
        elif kind == "out_of_range":
            column, value = _OUT_OF_RANGE_VALUES[int(rng.integers(len(_OUT_OF_RANGE_VALUES)))]
            df.iat[pos, col_pos[column]] = value
        else:  # duplicate_id: the same customer ingested twice
            source = clean_positions[np.searchsorted(clean_positions, pos) - 1]
            df.iat[pos, col_pos[ENTITY_ID]] = df.iat[source, col_pos[ENTITY_ID]]
    df[WRONG_TYPE_COLUMN] = df[WRONG_TYPE_COLUMN].astype("str")
    return df
