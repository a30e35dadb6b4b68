"""What the unit, DAG, integration and end-to-end tests share: one poll helper, free ports,
service checks, models and rows, and launchers for the gateway, Prometheus, Dask and Airflow.

The test trees import from here, never from each other.
"""

from __future__ import annotations

from flightdeck.devtools.launch import free_port
from tests.support.poll import eventually
from tests.support.services import require_service

__all__ = ["eventually", "free_port", "require_service"]
