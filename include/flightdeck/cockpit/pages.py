"""The cockpit's pages from the stores: each function reads, builds the view and renders it.

A store that cannot be read (the gateway down, no registry yet) becomes a line at the top of
the page naming the store and the error, so the other parts of the page still show.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flightdeck.cockpit import render
from flightdeck.cockpit.deployments import read_deployments
from flightdeck.cockpit.models import read_models
from flightdeck.cockpit.releases import release_view
from flightdeck.cockpit.reports import batch_champion, read_experiments, read_scored_days
from flightdeck.config import Settings

log = logging.getLogger(__name__)


@dataclass
class Sources:
    """Where the cockpit reads from. `gateway` is (base URL, admin token) or None when no gateway is
    configured; the token is used for GET calls only (the route table and its history are admin reads)."""

    settings: Settings
    gateway: tuple[str, str | None] | None
    base: str = "/cockpit"
    airflow: str = ""
    user: str = ""


def _problem(store: str, exc: Exception) -> str:
    log.warning("cockpit: %s unreadable: %s", store, exc)
    return f"{store} could not be read: {type(exc).__name__}: {exc}"


def _gateway(sources: Sources):
    from flightdeck.serving.client import GatewayClient

    url, token = sources.gateway
    return GatewayClient(url, token, timeout=5.0)


def _common(sources: Sources) -> dict:
    return {"base": sources.base, "airflow": sources.airflow, "user": sources.user}


def deployments_page(sources: Sources) -> str:
    problems, deployments = [], None
    if sources.gateway is None:
        problems.append("No gateway configured: set the Airflow connection flightdeck_gateway.")
    else:
        try:
            with _gateway(sources) as gateway:
                deployments = read_deployments(gateway)
        except Exception as exc:  # noqa: BLE001 - shown on the page
            problems.append(_problem(f"the gateway at {sources.gateway[0]}", exc))
    return render.page("deployments", "Deployments", "deployments", d=deployments, problems=problems,
                       default_model=sources.settings.model_name, **_common(sources))


def models_page(sources: Sources, lambda_aliases: list[dict] | None = None) -> str:
    from flightdeck.registry import Registry

    problems, routes, models = [], None, []
    if sources.gateway is not None:
        try:
            with _gateway(sources) as gateway:
                routes = gateway.routes().get("document")
        except Exception as exc:  # noqa: BLE001
            problems.append(_problem(f"the gateway at {sources.gateway[0]}", exc))
    days = read_scored_days(sources.settings.reports_dir, limit=1) if sources.settings.reports_dir.is_dir() else []
    uri = sources.settings.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        # Opening a missing SQLite store would create one: the cockpit only reads.
        problems.append(f"No MLflow registry yet at {uri}.")
        return render.page("models", "Models", "models", models=[], problems=problems, **_common(sources))
    try:
        models = read_models(Registry(uri, sources.settings.artifact_root, sources.settings.experiment_name), routes_document=routes,
                             default_model=sources.settings.model_name, batch_champion=batch_champion(days),
                             edge_store=sources.settings.home / "edge" / "store", lambda_aliases=lambda_aliases)
    except Exception as exc:  # noqa: BLE001
        problems.append(_problem(f"the MLflow registry at {sources.settings.tracking_uri}", exc))
    return render.page("models", "Models", "models", models=models, problems=problems, **_common(sources))


def batch_page(sources: Sources) -> str:
    reports = sources.settings.reports_dir
    days = read_scored_days(reports) if reports.is_dir() else []
    experiments = read_experiments(reports) if reports.is_dir() else []
    return render.page("batch", "Batch & experiments", "batch", days=days, experiments=experiments,
                       **_common(sources))


def releases_page(sources: Sources, runs: list[dict], problems: list[str] | None = None) -> str:
    views = [release_view(run) for run in runs]
    return render.page("releases", "Releases", "releases", releases=views, detail=False, problems=problems,
                       **_common(sources))


def release_page(sources: Sources, run: dict) -> str:
    view = release_view(run)
    return render.page("releases", f"Release {view.dag_id} · {view.run_id}", "releases", releases=[view],
                       detail=True, **_common(sources))


def report_path(sources: Sources, relative: str) -> Path:
    from flightdeck.cockpit.reports import report_file

    return report_file(sources.settings.reports_dir, relative)


PageBuilder = Callable[[Sources], str]
