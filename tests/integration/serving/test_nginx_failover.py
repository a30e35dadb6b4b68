"""Two `flightdeck serve` instances behind Debian's nginx, rendered from docker/nginx/templates:
under a fixed-rate load (flightdeck.devtools.load) one instance is SIGKILLed and restarted on its
port. No request may fail: nginx retries a refused scoring POST on the survivor
(proxy_next_upstream error … non_idempotent), leaves the dead instance out for fail_timeout and
sends traffic back once it answers again. nginx's access log (the upstream of every request, and
both upstreams when it retried) shows where each request went."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest
import yaml

from flightdeck.devtools.launch import free_port, stop_process_group
from flightdeck.devtools.load import Load
from flightdeck.platform import balancer
from tests.support.gateway import FLIGHTDECK, TOKEN, _wait_ready
from tests.support.models import records
from tests.support.poll import eventually
from tests.support.services import require_service

pytestmark = [pytest.mark.integration]

LINE = re.compile(r'^(?P<msec>[0-9.]+) \S+ "(?P<method>\S+) (?P<path>\S+) [^"]*" (?P<status>\d+) '
                  r'upstream=(?P<upstreams>.*?) upstream_status=')
ROUTES = {"default_endpoint": "default",
          "endpoints": {"default": {"policy": "single", "variants": {"live": {"alias": "champion"}}}}}


def spawn_instance(home, database_url, port) -> tuple[subprocess.Popen, object]:
    routes = home / "routes-nginx.yaml"
    routes.write_text(yaml.safe_dump(ROUTES))
    env = {**os.environ, "FLIGHTDECK_HOME": str(home), "FLIGHTDECK_GATEWAY_DATABASE_URL": database_url,
           "FLIGHTDECK_ADMIN_TOKENS": f'{{"ops": "{TOKEN}"}}', "FLIGHTDECK_CACHE_BACKEND": "off"}
    log = home / f"gateway-nginx-{port}.log"
    with open(log, "ab") as out:
        process = subprocess.Popen([FLIGHTDECK, "serve", "--port", str(port), "--workers", "1", "--grpc-port", "0",
                                    "--routes", str(routes)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return process, log


def start_instances(home, database_url, *ports) -> list[subprocess.Popen]:
    """Start the instances at once (their start-up is most of this test's time), then wait for each."""
    started = [spawn_instance(home, database_url, port) for port in ports]
    for port, (process, log) in zip(ports, started, strict=True):
        _wait_ready(f"http://127.0.0.1:{port}", 1, process, log)
    return [process for process, _ in started]


def read_log(path) -> list[tuple[float, int, list[str]]]:
    """(time, status, upstreams tried) for every scoring request."""
    rows = []
    for line in path.read_text().splitlines():
        found = LINE.match(line)
        if found and found["path"] == "/invocations":
            # Tried upstreams are separated by ", " (and " : " across upstream groups).
            tried = [u.strip() for u in found["upstreams"].replace(" : ", ", ").split(",")]
            rows.append((float(found["msec"]), int(found["status"]), tried))
    return rows


def test_sigkill_and_restart_of_one_instance_fails_no_request(registered_home, postgres_url, tmp_path):
    require_service("nginx (apt-get install nginx)", balancer.nginx_binary)
    home = registered_home
    port_a, port_b, port_lb = free_port(), free_port(), free_port()
    from flightdeck.serving import db

    db.upgrade(postgres_url)  # migrate once, so two instances starting together do not race
    db.dispose_engine(postgres_url)
    a, b = start_instances(home, postgres_url, port_a, port_b)
    prefix = tmp_path / "nginx"
    config = balancer.write_config(prefix, [balancer.Upstream("127.0.0.1", p, max_fails=1, fail_timeout_s=1)
                                            for p in (port_a, port_b)], port_lb, tries=2)
    nginx = balancer.start_nginx(config, prefix)
    load = None
    try:
        eventually(lambda: (prefix / "nginx.pid").exists(), 10, what="nginx started")
        load = Load(f"http://127.0.0.1:{port_lb}", records(50), rate=100).start()
        time.sleep(2)
        killed_at = time.time()
        os.killpg(a.pid, signal.SIGKILL)
        a.wait(10)
        time.sleep(3)
        (a,) = start_instances(home, postgres_url, port_a)
        back_at = time.time()
        time.sleep(3)
        load.stop()
        load_statuses = dict(load.statuses)
        load = None
    finally:
        if load is not None:
            load.stop()
        stop_process_group(nginx, 10)
        stop_process_group(a, 20)
        stop_process_group(b, 20)
    rows = read_log(prefix / "access.log")
    assert rows, "nginx logged no scoring request"
    failed = [r for r in rows if r[1] != 200]
    assert not failed, f"{len(failed)} requests failed through nginx: {failed[:5]}; load: {load_statuses}"
    assert set(load_statuses) == {200} and load_statuses[200] == len(rows), load_statuses
    a_addr, b_addr = f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"
    before = [r for r in rows if r[0] < killed_at]
    down = [r for r in rows if killed_at + 0.5 < r[0] < back_at - 0.5]
    after = [r for r in rows if r[0] > back_at + 1.5]
    assert {r[2][-1] for r in before} == {a_addr, b_addr}, "both instances served before the kill"
    assert down and {r[2][-1] for r in down} == {b_addr}, "the survivor took all traffic while A was down"
    assert a_addr in {r[2][-1] for r in after}, "traffic went back to the restarted instance"
    retried = [r for r in rows if len(r[2]) > 1]
    assert retried and all(r[2][0] == a_addr and r[2][-1] == b_addr for r in retried), retried[:5]
