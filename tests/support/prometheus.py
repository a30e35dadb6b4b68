"""A real Prometheus for tests: Debian's `prometheus` binary on a loopback port, scraping our targets.

Not a conftest: import `prometheus_server` where it is needed. Without the binary the test
is skipped on a developer machine and fails under CI (CI set), which must install it
(`apt-get install -y prometheus`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

from tests.integration.serving.gateway_server import free_port

JOB = "flightdeck"


def prometheus_binary() -> str:
    """Path of the `prometheus` binary; skips (or fails under CI) when it is not installed."""
    found = shutil.which("prometheus")
    if found:
        return found
    reason = "the `prometheus` binary is not on PATH. Fix: `apt-get install -y prometheus` (Debian's package)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must install it before the tests", pytrace=False)
    pytest.skip(reason)


@contextmanager
def prometheus_server(targets: list[str], scrape_interval: str = "1s", ready_timeout: float = 30.0) -> Iterator[str]:
    """Run Prometheus scraping `targets` ("host:port", path /metrics) every `scrape_interval`.

    Config and TSDB live in a temporary folder; yields the base URL
    (http://127.0.0.1:<port>) once /-/ready answers, and stops the process afterwards.
    """
    binary = prometheus_binary()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="flightdeck-prometheus-") as folder:
        root = Path(folder)
        config = {"global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                             "evaluation_interval": scrape_interval},
                  "scrape_configs": [{"job_name": JOB, "metrics_path": "/metrics",
                                      "static_configs": [{"targets": list(targets)}]}]}
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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/-/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"prometheus not ready after {timeout} s:\n{log_path.read_text()[-3000:]}")


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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scraped = last_scrape(base)
        if scraped is not None and scraped >= after:
            return scraped
        time.sleep(0.1)
    raise AssertionError(f"no successful scrape after {after} within {timeout} s (last: {last_scrape(base)})")
