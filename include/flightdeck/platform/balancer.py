"""Several gateways behind nginx on one machine (`flightdeck serve-balanced`, `make serve
GATEWAY_INSTANCES=N`): the configuration from docker/nginx/templates, rendered for local ports, and
the processes. nginx is Debian's (`apt-get install nginx`); it runs unprivileged in a folder of its own.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from flightdeck.errors import FlightdeckError

TEMPLATE = Path(__file__).resolve().parents[3] / "docker" / "nginx" / "templates" / "gateway.conf.template"


class BalancerError(FlightdeckError):
    """nginx or a gateway instance could not be set up; the message says which and why."""


@dataclass(frozen=True)
class Upstream:
    host: str
    port: int
    max_fails: int = 1
    fail_timeout_s: float = 2.0

    def line(self) -> str:
        return (f"server {self.host}:{self.port} max_fails={self.max_fails} "
                f"fail_timeout={self.fail_timeout_s:g}s;")


def render_include(upstreams: list[Upstream], listen: str, access_log: str, tries: int = 2,
                   template: Path = TEMPLATE) -> str:
    """The http-level include for these upstreams; every ${...} placeholder must be filled."""
    if not upstreams:
        raise BalancerError("at least one gateway instance is needed behind nginx")
    if tries < 1:
        raise BalancerError(f"next-upstream tries must be >= 1, got {tries}")
    values = {"GATEWAY_UPSTREAM_SERVERS": "\n    ".join(u.line() for u in upstreams),
              "NGINX_LISTEN": listen, "NGINX_ACCESS_LOG": access_log, "NGINX_NEXT_UPSTREAM_TRIES": str(tries)}
    text = template.read_text()
    for key, value in values.items():
        text = text.replace("${" + key + "}", value)
    left = re.findall(r"\$\{([A-Z_]+)\}", text)
    if left:
        raise BalancerError(f"{template} has placeholders nobody fills: {sorted(set(left))}")
    return text


def render_main(prefix: Path, include: Path) -> str:
    """A whole nginx.conf that runs unprivileged under `prefix` (pid, logs, temp folders)."""
    temps = "\n".join(f"    {name}_temp_path {prefix / 'tmp' / name};"
                      for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"worker_processes 1;\ndaemon off;\npid {prefix / 'nginx.pid'};\n"
            f"error_log {prefix / 'error.log'} warn;\nevents {{ worker_connections 1024; }}\n"
            f"http {{\n{temps}\n    include {include};\n}}\n")


def write_config(prefix: Path, upstreams: list[Upstream], port: int, tries: int = 2) -> Path:
    prefix.mkdir(parents=True, exist_ok=True)
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "tmp" / name).mkdir(parents=True, exist_ok=True)
    include = prefix / "gateway.conf"
    include.write_text(render_include(upstreams, f"127.0.0.1:{port}", str(prefix / "access.log"), tries))
    main = prefix / "nginx.conf"
    main.write_text(render_main(prefix, include))
    return main


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if not found:
        raise BalancerError("nginx is not installed: apt-get install nginx")
    return found


def start_nginx(config: Path, prefix: Path) -> subprocess.Popen:
    binary = nginx_binary()
    checked = subprocess.run([binary, "-t", "-q", "-p", str(prefix), "-c", str(config)], capture_output=True,
                             text=True, check=False)
    if checked.returncode != 0:
        raise BalancerError(f"nginx refused {config}: {checked.stderr.strip()}")
    return subprocess.Popen([binary, "-p", str(prefix), "-c", str(config)], start_new_session=True)


def serve_balanced(instances: int, port: int, first_instance_port: int, workers: int, routes: str | None,
                   prefix: Path) -> None:
    """Start `instances` × `flightdeck serve` and nginx in front; stop all on Ctrl-C or SIGTERM."""
    if instances < 1:
        raise BalancerError(f"--instances must be >= 1, got {instances}")
    ports = [first_instance_port + i for i in range(instances)]
    if port in ports:
        raise BalancerError(f"nginx's port {port} is one of the instances' ports {ports}: move --first-port")
    children: list[subprocess.Popen] = []
    flightdeck = str(Path(sys.executable).with_name("flightdeck"))

    def stop(*_):
        for child in reversed(children):
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for instance_port in ports:
            cmd = [flightdeck, "serve", "--port", str(instance_port), "--workers", str(workers), "--grpc-port", "0"]
            if routes:
                cmd += ["--routes", routes]
            children.append(subprocess.Popen(cmd, start_new_session=True))
        _wait_ready(children, ports)
        config = write_config(prefix, [Upstream("127.0.0.1", p) for p in ports], port)
        children.append(start_nginx(config, prefix))
        print(f"nginx on http://127.0.0.1:{port} in front of gateways on {', '.join(map(str, ports))}; "
              f"access log {prefix / 'access.log'} (upstream per request); Ctrl-C stops all", flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(1)
        dead = [child.args for child in children if child.poll() is not None]
        raise BalancerError(f"a process exited: {dead}")
    except KeyboardInterrupt:
        pass
    finally:
        stop()


def _wait_ready(children: list[subprocess.Popen], ports: list[int], timeout: float = 180) -> None:
    """Wait until every instance answers /v2/health/ready (its models loaded) before nginx starts."""
    import httpx

    deadline = time.monotonic() + timeout
    waiting = set(ports)
    while waiting:
        for child in children:
            if child.poll() is not None:
                raise BalancerError(f"{' '.join(map(str, child.args))} exited with {child.returncode}")
        for instance_port in sorted(waiting):
            try:
                if httpx.get(f"http://127.0.0.1:{instance_port}/v2/health/ready", timeout=2).status_code == 200:
                    waiting.discard(instance_port)
            except httpx.HTTPError:
                pass
        if waiting and time.monotonic() > deadline:
            raise BalancerError(f"instances on {sorted(waiting)} not ready after {timeout:g} s "
                                "(is a champion registered? see their log above)")
        time.sleep(0.5)
