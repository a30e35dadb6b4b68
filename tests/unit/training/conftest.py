from datetime import date, timedelta

import pandas as pd
import pytest

from flightdeck.data.generator import generate_partition


@pytest.fixture(scope="session")
def raw_frame() -> pd.DataFrame:
    """Ten clean days of 600 rows: enough labels to train on, small enough to be quick."""
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(10)]
    return pd.concat([generate_partition(day, rows=600, seed=7) for day in days], ignore_index=True)
