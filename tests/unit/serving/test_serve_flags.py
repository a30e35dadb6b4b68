"""`flightdeck serve` flags reach the app even when uvicorn runs it in the same process (one worker)."""

from __future__ import annotations

import uvicorn

from flightdeck.config import get_settings
from flightdeck.serving import server


def test_one_worker_app_reads_the_flags_not_the_cached_defaults(flightdeck_home, monkeypatch):
    for name in (*server._FLAG_ENV.values(), "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.delenv(name, raising=False)  # serve() exports them; restored after the test
    started = {}
    # The factory uvicorn calls in-process builds its app from get_settings(): record what it would see.
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: started.update(settings=get_settings(), **kwargs))
    cached = get_settings()  # the CLI reads the settings before it parses the flags
    assert cached.grpc_port != 50123

    server.serve(cached, gateway_port=50124, gateway_workers=1, grpc_port=50123)

    assert started["workers"] == 1 and started["port"] == 50124
    assert (started["settings"].grpc_port, started["settings"].gateway_port) == (50123, 50124)


def test_one_worker_metrics_reach_the_exposition(flightdeck_home):
    """In one process (uvicorn's single worker) metrics made after `prepare()` land in the
    multiprocess files that /metrics reads, though prometheus_client was imported before."""
    import subprocess
    import sys

    script = (
        "from flightdeck.serving.metrics import GatewayMetrics, exposition\n"
        "from flightdeck.config import get_settings\n"
        "from flightdeck.serving import server\n"
        "server.prepare(get_settings())\n"
        "metrics = GatewayMetrics()\n"
        "metrics.requests.labels('default', 'champion', '1').inc()\n"
        "print(exposition(metrics.registry)[0].decode())\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert 'flightdeck_requests_total{endpoint="default",model_version="1",variant="champion"} 1.0' in out.stdout
