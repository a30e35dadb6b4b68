"""The raw-data contract: column names, valid ranges and allowed categories.

Every module that reads or writes raw rows (generator, expectations, training, batch
scoring, serving) imports its column names from here, so a rename happens in one place.

A raw row is one credit application: who applied (`customer_id`), when (`event_time`),
what we knew at that moment (the features) and, later, whether the customer defaulted
within 60 days (`label`, known from `label_available_at`).
"""

from __future__ import annotations

ENTITY_ID = "customer_id"
"""String id like "C0001234567"; unique within a clean partition."""

EVENT_TIME = "event_time"
"""Tz-aware UTC timestamp of the application, inside the partition's day."""

LABEL = "label"
"""1 if the customer defaulted within 60 days, else 0 (int)."""

LABEL_TIME = "label_available_at"
"""UTC timestamp when the label became known: 7–60 days after `event_time`.
Training must only use rows whose label has arrived by the end of its window."""

DS = "ds"
"""Partition key, "YYYY-MM-DD" (the folder `ds=YYYY-MM-DD`)."""

# Valid range of each numeric feature, inclusive. Ranges are what a sane upstream system
# can produce, wider than what the generator draws, so drifted data still passes.
NUMERIC_RANGES: dict[str, tuple[float, float]] = {
    "age": (18.0, 100.0),
    "annual_income": (0.0, 5_000_000.0),
    "credit_score": (300.0, 850.0),
    "debt_to_income": (0.0, 3.0),
    "utilization": (0.0, 1.5),
    "num_open_accounts": (0.0, 60.0),
    "months_since_last_delinquency": (0.0, 240.0),  # 240 = none on record
    "num_delinquencies_2y": (0.0, 30.0),
    "num_credit_inquiries_6m": (0.0, 30.0),
    "months_since_oldest_account": (0.0, 1000.0),
    "total_credit_limit": (0.0, 2_000_000.0),
    "revolving_balance": (0.0, 2_000_000.0),
    "employment_length_years": (0.0, 60.0),
    "num_dependents": (0.0, 12.0),
    "savings_balance": (0.0, 10_000_000.0),
    "loan_amount": (500.0, 150_000.0),
    "loan_term_months": (3.0, 84.0),
    "interest_rate": (0.0, 0.4),
    "monthly_payment": (0.0, 20_000.0),
}

CATEGORY_VALUES: dict[str, tuple[str, ...]] = {
    "region": ("north", "south", "east", "west", "central"),
    "channel": ("branch", "online", "mobile", "broker"),
    "employment_type": (
        "salaried",
        "self_employed",
        "contractor",
        "unemployed",
        "retired",
        "student",
    ),
    "housing": ("own", "mortgage", "rent", "other"),
    "product": ("personal_loan", "credit_card", "auto_loan", "bnpl"),
    "education": ("secondary", "vocational", "bachelor", "master", "doctorate"),
}

NUMERIC_FEATURES: tuple[str, ...] = tuple(NUMERIC_RANGES)
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(CATEGORY_VALUES)
FEATURES: tuple[str, ...] = NUMERIC_FEATURES + CATEGORICAL_FEATURES

RAW_COLUMNS: tuple[str, ...] = (ENTITY_ID, EVENT_TIME, *FEATURES, LABEL, LABEL_TIME)
"""Column order of a raw partition."""
