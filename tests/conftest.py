"""Test-wide environment: every store in a temporary folder, Airflow pointed at our dags/.

Airflow reads its configuration when it is first imported, so the variables are set here,
before any test module imports it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="flightdeck-tests-"))

os.environ.update({
    "FLIGHTDECK_HOME": str(_SESSION_HOME / "flightdeck"),
    "AIRFLOW_HOME": str(_SESSION_HOME / "airflow"),
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "GX_ANALYTICS_ENABLED": "false",
})


@pytest.fixture
def flightdeck_home(tmp_path, monkeypatch):
    """A fresh FLIGHTDECK_HOME (and fresh settings) for one test."""
    from flightdeck.config import get_settings

    home = tmp_path / "flightdeck"
    monkeypatch.setenv("FLIGHTDECK_HOME", str(home))
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()
