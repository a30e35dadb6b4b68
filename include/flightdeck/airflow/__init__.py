"""Thin adapters between Airflow and flightdeck's domain code. Only this package and dags/
import Airflow; everything here stays small and delegates to the domain modules."""
