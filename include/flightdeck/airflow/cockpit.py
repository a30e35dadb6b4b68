"""The cockpit's FastAPI app, mounted by the Airflow plugin (plugins/flightdeck_cockpit.py) at /cockpit.

Only what ties the read model (`flightdeck.cockpit`) to Airflow lives here:
- every route requires a user signed in to Airflow with read access to DAG runs, through the
  api-server's own dependencies (`requires_access_dag`, `get_user`: the JWT in the
  `Authorization` header or Airflow's session cookie); no token, no page (401), a token
  without the right, 403;
- the gateway is the Airflow connection `flightdeck_gateway` (the one the promotion DAGs use);
- promotion runs, their task states, return values, failed gates' logs and pending approvals
  are read from Airflow's metadata database.
Every route is a GET and nothing here writes: approvals stay in Airflow's Required Actions,
which the Releases page links to.
"""


import logging
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)

URL_PREFIX = "/cockpit"
GATEWAY_CONN_ID = "flightdeck_gateway"
MAX_RUNS = 20


# ---- reads from Airflow ------------------------------------------------------------------
def gateway_from_connection() -> tuple[str, str | None] | None:
    """(base URL, admin token) of the gateway from the `flightdeck_gateway` connection, or None."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        conn = Connection.get_connection_from_secrets(GATEWAY_CONN_ID)
    except AirflowNotFoundException:
        return None
    scheme = conn.conn_type if conn.conn_type in ("http", "https") else "http"
    port = f":{conn.port}" if conn.port else ""
    return f"{scheme}://{conn.host}{port}", conn.password or None


def _iso(value) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value is not None else None


def _failure_log(ti) -> str:
    """The text of a task instance's latest try's log (events joined), '' when unreadable."""
    from airflow.utils.log.log_reader import TaskLogReader

    try:
        chunks, _ = TaskLogReader().read_log_chunks(ti, ti.try_number, {})
        events = []
        for chunk in chunks:
            for message in (chunk if isinstance(chunk, list | tuple) else [chunk]):
                event = getattr(message, "event", None)
                events.append(str(event) if event is not None else str(message))
        return "\n".join(events)
    except Exception as exc:  # noqa: BLE001 - a missing log must not blank the page
        log.warning("cockpit: log of %s unreadable: %s", ti, exc)
        return ""


def promotion_runs(dag_id: str | None = None, run_id: str | None = None, limit: int = MAX_RUNS) -> list[dict]:
    """The newest promotion runs as the plain dictionaries `flightdeck.cockpit.releases` reads."""
    from airflow.models.dagrun import DagRun
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from flightdeck.cockpit.releases import GATE_TASK, PROMOTION_DAGS

    with create_session() as session:
        query = select(DagRun).where(DagRun.dag_id.in_([dag_id] if dag_id else PROMOTION_DAGS))
        if run_id:
            query = query.where(DagRun.run_id == run_id)
        dag_runs = session.scalars(query.order_by(DagRun.run_after.desc()).limit(limit)).all()
        runs = []
        for dag_run in dag_runs:
            tis = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_run.dag_id,
                                                             TaskInstance.run_id == dag_run.run_id)).all()
            xcoms = session.scalars(select(XComModel).where(XComModel.dag_id == dag_run.dag_id,
                                                            XComModel.run_id == dag_run.run_id,
                                                            XComModel.key == "return_value")).all()
            values: dict[str, Any] = {}
            for row in xcoms:
                try:
                    values[row.task_id] = XComModel.deserialize_value(row)
                except Exception as exc:  # noqa: BLE001
                    log.warning("cockpit: XCom of %s unreadable: %s", row.task_id, exc)
            failure_logs = {ti.task_id: _failure_log(ti) for ti in tis
                            if ti.state == "failed" and (GATE_TASK.match(ti.task_id) or ti.task_id == "post_promotion_gate")}
            approval = None
            approve = next((ti for ti in tis if ti.task_id == "approve"), None)
            if approve is not None:
                detail = session.scalar(select(HITLDetail).where(HITLDetail.ti_id == approve.id))
                if detail is not None:
                    responder = detail.responded_by or {}
                    approval = {"pending": detail.responded_at is None and approve.state in ("deferred",
                                                                                             "awaiting_input"),
                                "chosen_options": list(detail.chosen_options or []),
                                "responded_by": responder.get("name") if isinstance(responder, dict) else str(responder),
                                "responded_at": _iso(detail.responded_at)}
            runs.append({
                "dag_id": dag_run.dag_id, "run_id": dag_run.run_id, "state": str(dag_run.state),
                "start_date": _iso(dag_run.start_date), "end_date": _iso(dag_run.end_date),
                "tasks": {ti.task_id: {"state": str(ti.state) if ti.state else None, "start_date": _iso(ti.start_date),
                                       "end_date": _iso(ti.end_date)} for ti in tis if ti.map_index in (-1, None)},
                "xcom": values, "failure_logs": failure_logs, "approval": approval})
        return runs


def lambda_aliases(limit: int = 20) -> list[dict]:
    """What the newest successful `serverless_package` run of each function alias deployed:
    [{"model", "function", "alias", "weights": {model version: share}}] (as recorded by that run's
    tasks; a later change made outside Airflow does not show)."""
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    out: dict[tuple[str, str], dict] = {}
    with create_session() as session:
        runs = session.scalars(select(DagRun).where(DagRun.dag_id == "serverless_package", DagRun.state == "success")
                               .order_by(DagRun.run_after.desc()).limit(limit)).all()
        for run in runs:
            rows = session.scalars(select(XComModel).where(
                XComModel.dag_id == run.dag_id, XComModel.run_id == run.run_id, XComModel.key == "return_value",
                XComModel.task_id.in_(("package", "deploy")))).all()
            values = {row.task_id: XComModel.deserialize_value(row) for row in rows}
            built, deployed = values.get("package") or {}, values.get("deploy") or {}
            key = (deployed.get("function_name"), deployed.get("alias"))
            if None in key or key in out or not built.get("model_version"):
                continue
            out[key] = {"model": built.get("model_name"), "function": key[0], "alias": key[1],
                        "weights": {str(built["model_version"]): float(deployed.get("candidate_percent") or 0) / 100}}
    return list(out.values())


def _scored_day(dag_id: str, run_id: str) -> str | None:
    """The day a batch_score run scores: its data interval's start (the run at 02:00 on D scores D-1)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        start = run.data_interval_start if run is not None else None
        return start.date().isoformat() if start is not None else None


# ---- the app -------------------------------------------------------------------------------
def _sources(user) -> Any:
    from flightdeck.cockpit.pages import Sources
    from flightdeck.config import get_settings

    return Sources(settings=get_settings(), gateway=gateway_from_connection(), base=URL_PREFIX, airflow="",
                   user=user.get_name())


class LazyApp:
    """An ASGI app that builds the cockpit's FastAPI app on its first request.

    Airflow loads the plugins folder in every process (task runners and the dag-processor too,
    for macros and listeners); only the api-server serves the app, so only it pays for FastAPI
    and the api-server's security module."""

    def __init__(self) -> None:
        self._app = None

    async def __call__(self, scope, receive, send) -> None:
        if self._app is None:
            self._app = create_app()
        await self._app(scope, receive, send)

    def __repr__(self) -> str:
        return "flightdeck.airflow.cockpit.create_app()"


def create_app():
    """The cockpit app; every route needs a signed-in Airflow user allowed to read DAG runs."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

    from flightdeck.cockpit import pages

    read_access = Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.RUN))

    app = FastAPI(title="flightdeck cockpit", description="Read-only views of flightdeck's deployments, "
                  "releases, models, batch scoring and experiments.", dependencies=[read_access],
                  docs_url=None, redoc_url=None, openapi_url=None)

    def html(text: str) -> HTMLResponse:
        return HTMLResponse(text, headers={"Cache-Control": "no-store"})

    @app.get("/", include_in_schema=False)
    def index() -> RedirectResponse:
        return RedirectResponse(f"{URL_PREFIX}/deployments")

    @app.get("/deployments", response_class=HTMLResponse)
    def deployments(user: GetUserDep) -> HTMLResponse:
        return html(pages.deployments_page(_sources(user)))

    @app.get("/releases", response_class=HTMLResponse)
    def releases(user: GetUserDep) -> HTMLResponse:
        problems = []
        try:
            runs = promotion_runs()
        except Exception as exc:  # noqa: BLE001
            log.exception("cockpit: promotion runs unreadable")
            runs, problems = [], [f"Airflow's metadata could not be read: {exc}"]
        return html(pages.releases_page(_sources(user), runs, problems))

    @app.get("/releases/{dag_id}/{run_id:path}", response_class=HTMLResponse)
    def release(dag_id: str, run_id: str, user: GetUserDep) -> HTMLResponse:
        from flightdeck.cockpit.releases import PROMOTION_DAGS

        if dag_id not in PROMOTION_DAGS:
            raise HTTPException(404, f"{dag_id!r} is not a promotion DAG ({', '.join(PROMOTION_DAGS)})")
        runs = promotion_runs(dag_id, run_id, limit=1)
        if not runs:
            raise HTTPException(404, f"no run {run_id!r} of {dag_id}")
        return html(pages.release_page(_sources(user), runs[0]))

    @app.get("/models", response_class=HTMLResponse)
    def models(user: GetUserDep) -> HTMLResponse:
        try:
            aliases = lambda_aliases()
        except Exception:  # noqa: BLE001 - the rest of the page still shows
            log.exception("cockpit: serverless_package runs unreadable")
            aliases = None
        return html(pages.models_page(_sources(user), lambda_aliases=aliases))

    @app.get("/batch", response_class=HTMLResponse)
    def batch(user: GetUserDep) -> HTMLResponse:
        return html(pages.batch_page(_sources(user)))

    @app.get("/reports/{relative:path}")
    def report(relative: str, user: GetUserDep) -> FileResponse:
        try:
            path = pages.report_path(_sources(user), relative)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        except FileNotFoundError:
            raise HTTPException(404, f"no report file {relative!r}") from None
        return FileResponse(path)

    @app.get("/run/{dag_id}/{run_id:path}", include_in_schema=False)
    def run_tab(dag_id: str, run_id: str, user: GetUserDep) -> Any:
        """The DAG-run tab: a promotion run's release page, a batch_score run's report of the day it
        scored; other DAGs' runs say what the cockpit shows."""
        from flightdeck.cockpit.releases import PROMOTION_DAGS

        if dag_id in PROMOTION_DAGS:
            return RedirectResponse(f"{URL_PREFIX}/releases/{dag_id}/{quote(run_id, safe='')}")
        if dag_id == "batch_score" and (ds := _scored_day(dag_id, run_id)) is not None:
            try:
                pages.report_path(_sources(user), f"ds={ds}/index.html")
            except FileNotFoundError:
                return HTMLResponse(f"<p style='font-family:sans-serif'>No report for {ds} yet.</p>")
            return RedirectResponse(f"{URL_PREFIX}/reports/ds={ds}/index.html")
        return HTMLResponse(f"<p style='font-family:sans-serif'>The cockpit has release pages for "
                            f"{', '.join(PROMOTION_DAGS)} runs; see <a href='{URL_PREFIX}/batch'>Batch &amp; "
                            "experiments</a> for the others.</p>")

    return app

