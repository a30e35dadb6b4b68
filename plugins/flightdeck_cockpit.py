"""flightdeck's Airflow plugin: the cockpit, read-only views of what flightdeck runs in production.

Airflow 3 plugin interface: a FastAPI app mounted by the api-server at /cockpit (its routes need a
signed-in Airflow user, see flightdeck.airflow.cockpit; it is built on its first request, so the
other processes that load this folder import nothing heavy) and external views that the UI shows in
an iframe: four entries under "Cockpit" in the navigation, and a "Cockpit" tab on DAG-run pages (a promotion
run's release page, a batch_score run's report of its day).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from flightdeck.airflow.cockpit import URL_PREFIX, LazyApp

CATEGORY = "Cockpit"


def _view(name: str, page: str) -> dict:
    return {"name": name, "href": f"{URL_PREFIX}/{page}", "url_route": f"cockpit-{page}", "category": CATEGORY,
            "destination": "nav"}


class FlightdeckCockpitPlugin(AirflowPlugin):
    name = "flightdeck_cockpit"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "flightdeck cockpit"}]
    external_views = [
        _view("Deployments", "deployments"),
        _view("Releases", "releases"),
        _view("Models", "models"),
        _view("Batch & experiments", "batch"),
        {"name": "Cockpit", "href": f"{URL_PREFIX}/run/{{DAG_ID}}/{{RUN_ID}}", "url_route": "cockpit-release",
         "destination": "dag_run"},
    ]
