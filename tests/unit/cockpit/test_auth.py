"""Only users signed in to Airflow see the cockpit: its app, mounted as the api-server mounts a
plugin's app beside Airflow's own auth manager, served by uvicorn and called over plain HTTP.

The metadata database is a SQLite file of this module's, with Airflow's tables created from its
models (what the auth path reads: revoked tokens, and a DAG's team for per-DAG checks); Airflow's
session factory points at it while the module runs.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from flightdeck.devtools.launch import free_port


@pytest.fixture(scope="module")
def cockpit_url(tmp_path_factory):
    import sqlalchemy as sa
    import uvicorn
    from airflow import settings
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.models import import_all_models
    from airflow.models.base import Base
    from fastapi import FastAPI
    from sqlalchemy.orm import scoped_session, sessionmaker

    from flightdeck.airflow.cockpit import URL_PREFIX, create_app

    import_all_models()
    engine = sa.create_engine(f"sqlite:///{tmp_path_factory.mktemp('cockpit-auth') / 'airflow.db'}")
    Base.metadata.create_all(engine)
    saved = settings.engine, settings.Session, settings.NonScopedSession
    settings.NonScopedSession = sessionmaker(bind=engine, expire_on_commit=False)
    settings.engine, settings.Session = engine, scoped_session(settings.NonScopedSession)
    root = FastAPI()
    root.mount(URL_PREFIX, create_app())
    auth_manager = init_auth_manager(root)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(root, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the cockpit's test server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}{URL_PREFIX}", auth_manager
    server.should_exit = True
    thread.join(timeout=10)
    settings.engine, settings.Session, settings.NonScopedSession = saved
    engine.dispose()


def token(auth_manager, role: str | None) -> str:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return auth_manager.generate_jwt(SimpleAuthManagerUser(username=f"user-{role}", role=role))


@pytest.mark.parametrize("view", ["deployments", "releases", "models", "batch", "reports/ds=2026-01-01/index.html",
                                  "releases/promote_canary/some-run", "run/batch_score/some-run"])
def test_without_credentials_every_view_is_refused(cockpit_url, view):
    url, _ = cockpit_url
    response = httpx.get(f"{url}/{view}", timeout=30)
    assert response.status_code == 401, response.text
    assert "flightdeck" not in response.text


def test_a_forged_token_or_cookie_is_refused(cockpit_url):
    url, _ = cockpit_url
    forged = "eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl"
    assert httpx.get(f"{url}/batch", headers={"Authorization": f"Bearer {forged}"}, timeout=30).status_code == 403
    assert httpx.get(f"{url}/batch", cookies={"_token": forged}, timeout=30).status_code == 403


def test_a_signed_in_user_without_a_role_is_forbidden(cockpit_url):
    url, auth_manager = cockpit_url
    response = httpx.get(f"{url}/batch", headers={"Authorization": f"Bearer {token(auth_manager, None)}"},
                         timeout=30)
    assert response.status_code == 403


def test_a_signed_in_viewer_reads_the_pages_by_header_or_by_airflows_session_cookie(cockpit_url):
    url, auth_manager = cockpit_url
    viewer = token(auth_manager, "viewer")
    response = httpx.get(f"{url}/batch", headers={"Authorization": f"Bearer {viewer}"}, timeout=30)
    assert response.status_code == 200
    assert "<h1>Batch &amp; experiments</h1>" in response.text and "user-viewer" in response.text
    response = httpx.get(f"{url}/releases", cookies={"_token": viewer}, timeout=30)
    assert response.status_code == 200 and "<h1>Releases</h1>" in response.text


def test_the_app_answers_reads_only(cockpit_url):
    url, auth_manager = cockpit_url
    viewer = {"Authorization": f"Bearer {token(auth_manager, 'admin')}"}
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert httpx.request(method, f"{url}/deployments", headers=viewer, timeout=30).status_code == 405


def test_report_files_outside_the_reports_folder_are_refused(cockpit_url):
    url, auth_manager = cockpit_url
    viewer = {"Authorization": f"Bearer {token(auth_manager, 'viewer')}"}
    response = httpx.get(f"{url}/reports/..%2F..%2Fetc%2Fpasswd", headers=viewer, timeout=30)
    assert response.status_code in (400, 404)
    assert "root:" not in response.text


def test_a_promotion_runs_tab_leads_to_its_release_page(cockpit_url):
    url, auth_manager = cockpit_url
    viewer = {"Authorization": f"Bearer {token(auth_manager, 'viewer')}"}
    response = httpx.get(f"{url}/run/promote_canary/manual__2026-12-01T10%3A00%3A00%2B00%3A00", headers=viewer,
                         timeout=30)
    assert response.status_code == 307
    assert response.headers["location"] == "/cockpit/releases/promote_canary/manual__2026-12-01T10%3A00%3A00%2B00%3A00"
