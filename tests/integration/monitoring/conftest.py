"""One monitored world for the monitoring tests: a real gateway under load, a real stream
scorer on Redis, a real Dask scheduler, and a real Prometheus that scrapes them with the jobs of
docker/prometheus/prometheus.yml and evaluates docker/prometheus/rules/ every second.

Gateway routes (default endpoint `credit`):
  credit  canary 50/50 as a rollout lays it out (variants `stable` / `canary`); the canary fails
          20 % of its calls and is 20 ms slower, a fallback to `stable` answers its failures
  mirror  the champion live, version 2 as a 100 % shadow; the same few rows again and again
          (cache hits)
Besides the load: refused requests (422) and requests an admin forced onto a variant.
Stream: scored events, a poison event (dead letter), a late one and one from the future (clamped).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from flightdeck.devtools.launch import free_port, stop_process_group
from flightdeck.devtools.load import Load
from tests.support.gateway import AUTH, gateway_process, register_two_versions
from tests.support.models import onnx_model, records
from tests.support.poll import eventually
from tests.support.prometheus import prometheus_binary, prometheus_process
from tests.support.services import REDIS_URL, redis_client

REPO = Path(__file__).resolve().parents[3]
PROMETHEUS_DIR = REPO / "docker/prometheus"
BIN = Path(sys.executable).parent
ROUTES = {"default_endpoint": "credit", "endpoints": {
    "credit": {"policy": "canary", "weights": {"stable": 50, "canary": 50},
               "variants": {"stable": {"alias": "champion"},
                            "canary": {"version": "2", "faults": {"error_rate": 0.2, "latency_ms": 20}}},
               "fallback": {"variant": "stable", "latency_budget_ms": 5000, "failure_threshold": 1_000_000}},
    "mirror": {"policy": "single", "variants": {"live": {"alias": "champion"}, "dark": {"version": "2"}},
               "shadow": {"variant": "dark", "percent": 100}},
}}
STREAM_EVENTS = 300


@dataclass
class Monitored:
    prometheus: str
    gateway: str
    jobs: dict[str, str]  # job name -> scraped host:port
    timings: dict[str, float] = field(default_factory=dict)


def prometheus_config(targets: dict[str, str]) -> dict:
    """docker/prometheus/prometheus.yml with its jobs pointed at `targets`, the repository's rule
    files, one-second scrapes and evaluations, and no Alertmanager."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / pattern) for pattern in config["rule_files"]]
    config.pop("alerting", None)
    jobs = [job for job in config["scrape_configs"] if job["job_name"] in targets]
    assert {job["job_name"] for job in jobs} == set(targets), "a job of the test is missing from prometheus.yml"
    for job in jobs:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    config["scrape_configs"] = jobs
    return config


def prometheus_with_rules(targets: dict[str, str]):
    """The real Prometheus with the repository's configuration and rules, scraping `targets`."""
    return prometheus_process(prometheus_config(targets))


def spawn(log_path: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen(list(args), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {})})


def wait_for_metrics(url: str, process: subprocess.Popen, log_path: Path, what: str, timeout: float = 60) -> None:
    def answering() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    eventually(answering, timeout, 0.2, what=f"{what} to serve {url}", detail=lambda: log_path.read_text()[-3000:])


def stream_events(prefix: str) -> list[bytes]:
    """Scored events at the current time, then a poison event, a late one and a future one."""
    now = time.time()
    rows = records(STREAM_EVENTS, seed=31)
    events = [json.dumps({"customer_id": f"c{i % 40}", "event_time": now - 5 + i * 0.01, "event_id": f"{prefix}{i}",
                          **row}).encode() for i, row in enumerate(rows)]
    events.append(b"{not json")
    events.append(json.dumps({"customer_id": "late", "event_time": now - 3600, "event_id": f"{prefix}late",
                              **rows[0]}).encode())
    events.append(json.dumps({"customer_id": "ahead", "event_time": now + 3600, "event_id": f"{prefix}ahead",
                              **rows[1]}).encode())
    return events


@pytest.fixture(scope="module")
def monitored(tmp_path_factory, module_postgres_url) -> Iterator[Monitored]:
    prometheus_binary()  # skip (or fail under CI) before starting anything
    redis = redis_client()
    timings: dict[str, float] = {}
    clock = time.monotonic()
    home = tmp_path_factory.mktemp("monitoring-home")
    model_file = home / "model.onnx"
    model_file.write_bytes(onnx_model(1))
    name = f"monitoring-{uuid.uuid4().hex[:8]}"
    streams = {"input": f"{name}:events", "output": f"{name}:scores", "dead_letter": f"{name}:dead",
               "alerts": f"{name}:alerts"}
    with ExitStack() as stack:
        stack.callback(_delete_keys, redis, name)
        events = stream_events(name)
        redis.xadd(streams["input"], {"data": events[0]})  # the scorer needs its input stream to exist
        # The Dask scheduler and the stream scorer boot while the models are registered.
        dask_port, dask_dashboard, scorer_port = free_port(), free_port(), free_port()
        dask_log, scorer_log = home / "dask.log", home / "scorer.log"
        dask = spawn(dask_log, str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(dask_port),
                     "--dashboard-address", f"127.0.0.1:{dask_dashboard}")
        stack.callback(stop_process_group, dask, 10)
        scorer = spawn(scorer_log, str(BIN / "flightdeck"), "stream", "--redis-url", REDIS_URL,
                       "--input", streams["input"], "--output", streams["output"],
                       "--dead-letter", streams["dead_letter"], "--alerts", streams["alerts"], "--consumer", name,
                       "--model-file", str(model_file), "--metrics-port", str(scorer_port),
                       "--batch-size", "50", "--idle-stop", "300", env={"FLIGHTDECK_HOME": str(home)})
        stack.callback(stop_process_group, scorer, 10)
        register_two_versions(home)
        timings["register models"] = time.monotonic() - clock
        clock = time.monotonic()
        gateway, _ = stack.enter_context(gateway_process(home, module_postgres_url, ROUTES, workers=1))
        wait_for_metrics(f"http://127.0.0.1:{scorer_port}/metrics", scorer, scorer_log, "the stream scorer")
        wait_for_metrics(f"http://127.0.0.1:{dask_dashboard}/metrics", dask, dask_log, "the Dask scheduler")
        timings["gateway, scorer, dask start"] = time.monotonic() - clock
        clock = time.monotonic()
        jobs = {"gateway": gateway.removeprefix("http://"), "stream-scorer": f"127.0.0.1:{scorer_port}",
                "dask-scheduler": f"127.0.0.1:{dask_dashboard}"}
        prometheus = stack.enter_context(prometheus_with_rules(jobs))
        timings["prometheus start"] = time.monotonic() - clock
        clock = time.monotonic()

        # Counters must be seen before they move: increase() ignores a series' first value.
        eventually(lambda: instant_up(prometheus) >= set(jobs), 20, 0.2, what="a first scrape of every job")
        load = Load(gateway, records(200, seed=32), rate=60).start()
        stack.callback(load.stop)
        pipe = redis.pipeline(transaction=False)
        for event in events[1:]:
            pipe.xadd(streams["input"], {"data": event})
        pipe.execute()
        with httpx.Client(base_url=gateway, timeout=10) as client:
            repeated = records(3, seed=33)
            for i in range(60):  # three rows over and over: cache hits
                client.post("/endpoints/mirror/invocations", json={"dataframe_records": [repeated[i % 3]]})
            for _ in range(3):
                assert client.post("/invocations", json={"dataframe_records": [{"age": 41}]}).status_code == 422
                forced = client.post("/invocations", json={"dataframe_records": repeated[:1]},
                                     headers={**AUTH, "X-Flightdeck-Variant": "stable"})
                assert forced.status_code == 200, forced.text
        timings["extra traffic"] = time.monotonic() - clock
        yield Monitored(prometheus, gateway, jobs, timings)
    print("timings (s):", {k: round(v, 2) for k, v in timings.items()})


def instant_up(prometheus: str) -> set[str]:
    """The jobs Prometheus has scraped successfully."""
    reply = httpx.get(f"{prometheus}/api/v1/query", params={"query": "up == 1"}, timeout=5).json()
    return {r["metric"]["job"] for r in reply["data"]["result"]}


def _delete_keys(redis, name: str) -> None:
    keys = list(redis.scan_iter(match=f"{name}:*", count=5000)) + \
        list(redis.scan_iter(match=f"flightdeck:stream:{name}*", count=5000))
    if keys:
        redis.delete(*keys)
