"""`flightdeck serve`: migrate the gateway database, seed the route table, run the workers.

The HTTP server is granian (HTTP/1.1 parsing and writing in Rust, off the GIL): under the
serving benchmark's single-row load it takes less CPU per request than uvicorn with uvloop
and httptools (benchmarks/README.md, serving). The app is the same ASGI application.
"""

from __future__ import annotations

import logging
import os
import shutil

from prometheus_client import values

from flightdeck.config import Settings, get_settings
from flightdeck.serving import db
from flightdeck.serving.gateway import ensure_route_table
from flightdeck.serving.store import RouteStore

log = logging.getLogger(__name__)

# Seconds a worker gets to finish its requests and flush its logs at shutdown.
GRACEFUL_SHUTDOWN_S = 10

# Settings the workers read from the environment: flags of `flightdeck serve` go there.
_FLAG_ENV = {"gateway_host": "FLIGHTDECK_GATEWAY_HOST", "gateway_port": "FLIGHTDECK_GATEWAY_PORT",
             "gateway_workers": "FLIGHTDECK_GATEWAY_WORKERS", "grpc_port": "FLIGHTDECK_GRPC_PORT",
             "routes_file": "FLIGHTDECK_ROUTES_FILE"}


def prepare(settings: Settings) -> int:
    """Everything done once before the workers start; returns the route version in force."""
    settings.check_admin_tokens()
    db.upgrade(settings.gateway_db_url)
    stored = ensure_route_table(RouteStore(db.engine_for(settings.gateway_db_url)), settings)
    # One folder per port: prometheus_client's multiprocess files of this server only.
    metrics_dir = settings.gateway_dir / "metrics" / str(settings.gateway_port)
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # prometheus_client picks its value store when it is imported, which in this process was
    # before the variable above existed. With one worker uvicorn builds the app here, so pick the
    # store again: else its metrics stay in memory and /metrics (which reads the files) shows none.
    values.ValueClass = values.get_value_class()
    return stored.version


def serve(settings: Settings, **overrides) -> None:
    """Run the gateway until interrupted. `overrides` are settings given as CLI flags."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops

    for name, value in overrides.items():
        if value is not None:
            os.environ[_FLAG_ENV[name]] = str(value)
            settings = settings.model_copy(update={name: value})
    # The workers build the app from the environment; anything in this process that builds it
    # (a test, a future in-process mode) must not see the settings cached before the flags.
    get_settings.cache_clear()
    version = prepare(settings)
    log.info("serving route table v%s on http://%s:%s (gRPC %s) with %s workers", version, settings.gateway_host,
             settings.gateway_port, settings.grpc_port or "off", settings.gateway_workers)
    Granian("flightdeck.serving.app:create_app", factory=True, interface=Interfaces.ASGI,
            address=settings.gateway_host, port=settings.gateway_port, workers=settings.gateway_workers,
            loop=Loops.uvloop, http=HTTPModes.http1, websockets=True, log_access=False,
            workers_kill_timeout=GRACEFUL_SHUTDOWN_S, process_name=process_name(settings)).serve()


def process_name(settings: Settings) -> str:
    """The title `ps` shows for the server (its workers add " worker-N"): granian replaces the
    command line with a title, so the title says what runs and where."""
    return f"flightdeck serve {settings.gateway_host}:{settings.gateway_port}"
