"""Every `flightdeck serve` flag reaches the workers uvicorn spawns.

Spawned workers read their settings from the environment only, so each flag must end up
exported (and in the settings the parent process uses). The whole chain with two real workers
and a non-default gRPC port is tested in tests/integration/serving/test_oip_clients.py.
"""

from __future__ import annotations

import os

import uvicorn

from flightdeck import cli
from flightdeck.config import Settings, get_settings
from flightdeck.serving import server


def _serve_flags() -> list[str]:
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command" or getattr(a, "choices", None))
    serve = commands.choices["serve"]
    return [a.option_strings[0] for a in serve._actions if a.option_strings and a.dest != "help"]


def test_every_serve_flag_is_exported_for_spawned_workers(flightdeck_home, monkeypatch, tmp_path):
    for name in (*server._FLAG_ENV.values(), "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.delenv(name, raising=False)  # serve() exports them; restored after the test
    routes = tmp_path / "routes.yaml"
    routes.write_text("endpoints:\n  credit:\n    policy: single\n    variants:\n      c: {alias: champion}\n")
    values = {"--host": "127.0.0.3", "--port": "50125", "--workers": "3", "--grpc-port": "50126",
              "--routes": str(routes)}
    assert sorted(_serve_flags()) == sorted(values), "a new serve flag needs a value here and an env name"
    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: started.update(kwargs))
    get_settings.cache_clear()

    assert cli.main(["serve", *(item for pair in values.items() for item in pair)]) == 0

    assert started["workers"] == 3 and (started["host"], started["port"]) == ("127.0.0.3", 50125)
    exported = {name: os.environ[env] for name, env in server._FLAG_ENV.items()}
    assert exported == {"gateway_host": "127.0.0.3", "gateway_port": "50125", "gateway_workers": "3",
                        "grpc_port": "50126", "routes_file": str(routes)}
    # What a spawned worker builds its settings from: the environment alone.
    worker = Settings()
    assert (worker.gateway_host, worker.gateway_port, worker.gateway_workers, worker.grpc_port,
            worker.routes_file) == ("127.0.0.3", 50125, 3, 50126, routes)
    get_settings.cache_clear()
