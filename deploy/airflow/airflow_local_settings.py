"""Airflow's local settings for flightdeck (Airflow imports this module in every component at
start, from $AIRFLOW_HOME/config or the Python path). In a LocalExecutor scheduler it imports
the domain code the tasks use, so each task's fork starts with it loaded (see
flightdeck/airflow/preload.py); elsewhere it does nothing. It defines no policies."""

import sys

from airflow.configuration import conf

from flightdeck.airflow.preload import preload_for_tasks

__all__: list[str] = []  # nothing here is a cluster policy or a setting for Airflow to pick up

preload_for_tasks(sys.argv, conf.get("core", "executor"))
