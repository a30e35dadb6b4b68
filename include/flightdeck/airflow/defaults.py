"""Settings every flightdeck DAG shares."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk.exceptions import AirflowFailException

from flightdeck.errors import FlightdeckError

OWNER = "flightdeck"

DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
}


@contextmanager
def fail_fast_on_user_error():
    """Turn a FlightdeckError (bad params, bad data) into a failure that is not retried.

    Retrying cannot fix bad input, and each retry would only delay the message the user needs.
    """
    try:
        yield
    except FlightdeckError as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def branch_end(task_id: str) -> EmptyOperator:
    """A task that does nothing: the visible end of a branch (e.g. `stop`, `skip_approval`)."""
    return EmptyOperator(task_id=task_id)


def registry():
    """The MLflow registry of the settings (imported on use: DAG files must not load MLflow)."""
    from flightdeck.registry import Registry

    return Registry.from_settings()
