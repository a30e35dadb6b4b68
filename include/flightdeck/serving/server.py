"""`flightdeck serve`: migrate the gateway database, seed the route table, run uvicorn workers."""

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
    import uvicorn

    for name, value in overrides.items():
        if value is not None:
            os.environ[_FLAG_ENV[name]] = str(value)
            settings = settings.model_copy(update={name: value})
    # With one worker uvicorn runs the app in this process, where `get_settings()` was cached before
    # the flags were exported: without this the app read the defaults (gRPC on 8081, whatever the flag).
    get_settings.cache_clear()
    version = prepare(settings)
    log.info("serving route table v%s on http://%s:%s (gRPC %s) with %s workers", version, settings.gateway_host,
             settings.gateway_port, settings.grpc_port or "off", settings.gateway_workers)
    uvicorn.run("flightdeck.serving.app:create_app", factory=True, host=settings.gateway_host,
                port=settings.gateway_port, workers=settings.gateway_workers, loop="uvloop", http="httptools",
                access_log=False, timeout_graceful_shutdown=10, log_level="info",
                ws_max_size=settings.max_body_bytes)  # larger WebSocket messages close with 1009
