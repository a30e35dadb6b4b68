"""A real Prometheus for tests: Debian's `prometheus` binary on a loopback port, scraping our targets.

Not a conftest: import `prometheus_server` where it is needed. Without the binary the test
is skipped on a developer machine and fails under CI (CI set), which must install it
(`apt-get install -y prometheus`).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

from flightdeck.devtools.launch import free_port
from tests.support.poll import eventually
from tests.support.services import require_service

JOB = "flightdeck"


def prometheus_binary() -> str:
    """Path of the `prometheus` binary; skips (or fails under CI) when it is not installed."""
    return require_service("the `prometheus` binary (Fix: `apt-get install -y prometheus`, Debian's package)",
                           lambda: shutil.which("prometheus"))


@contextmanager
def prometheus_server(targets: list[str], scrape_interval: str = "1s", ready_timeout: float = 30.0) -> Iterator[str]:
    """Run Prometheus scraping `targets` ("host:port", path /metrics) every `scrape_interval`.

    Config and TSDB live in a temporary folder; yields the base URL
    (http://127.0.0.1:<port>) once /-/ready answers, and stops the process afterwards.
    """
    config = {"global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                         "evaluation_interval": scrape_interval},
              "scrape_configs": [{"job_name": JOB, "metrics_path": "/metrics",
                                  "static_configs": [{"targets": list(targets)}]}]}
    with prometheus_process(config, ready_timeout) as base:
        yield base


@contextmanager
def prometheus_process(config: dict, ready_timeout: float = 30.0) -> Iterator[str]:
    """Run Prometheus with the configuration `config` on a free loopback port; yields its base URL
    once /-/ready answers, and stops the process afterwards."""
    binary = prometheus_binary()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="flightdeck-prometheus-") as folder:
        root = Path(folder)
        (root / "prometheus.yml").write_text(yaml.safe_dump(config))
        log_path = root / "prometheus.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [binary, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base, process, log_path, ready_timeout)
            yield base
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(base: str, process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            return httpx.get(f"{base}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    eventually(ready, timeout, what="prometheus to be ready", detail=lambda: log_path.read_text()[-3000:])


def last_scrape(base: str) -> float | None:
    """Unix time of the oldest of the latest scrapes of every target (None before the first one)."""
    up = f'up{{job="{JOB}"}}'
    # timestamp() gives a sample's own time only when applied to a selector directly.
    reply = httpx.get(f"{base}/api/v1/query", params={"query": f"min(timestamp({up}) and {up} == 1)"},
                      timeout=5).json()
    result = reply["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def wait_for_scrape(base: str, after: float, timeout: float = 20.0) -> float:
    """Wait until every target was scraped (successfully) at or after `after`; returns that scrape's time."""
    def scraped_since() -> float | None:
        scraped = last_scrape(base)
        return scraped if scraped is not None and scraped >= after else None

    return eventually(scraped_since, timeout, what=f"a successful scrape after {after}",
                      detail=lambda: f"last: {last_scrape(base)}")
