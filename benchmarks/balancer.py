"""What nginx in front of the gateway costs: throughput through the balancer as a share of
direct throughput, on the same backend, in one run.

Starts two `flightdeck serve` instances (each `--workers 2`, as `flightdeck serve-balanced` runs
them: PostgreSQL route store, running sums and prediction log, Prometheus metrics) and two nginx
processes configured by `flightdeck.platform.balancer.write_config` (the repository's template):
one with instance A as its only upstream, one with A and B. Then, for `--rounds` rounds, wrk
(closed loop, the same body, threads and connections) loads in turn

* direct  - instance A itself;
* nginx   - nginx with A as its one upstream (same backend as `direct`);
* nginx-2 - nginx with A and B (information: scaling out on the same two cores).

The arms alternate inside each round (direct, nginx, nginx-2, direct, nginx, ...), so drift of
the machine's other load hits every arm alike. Each round gives a paired ratio nginx / direct;
the median of those is held against the target (>= 0.8). p99 latencies are reported beside.
The response cache is off by default: wrk posts one fixed body, which the cache would answer
after the first request, leaving nothing but the HTTP layers to measure (`--cache` turns it on).

    python benchmarks/balancer.py [--rounds 3] [--duration 10] [--connections 16] [--json PATH]

Data, the registered model and the request body live in --home (default
FLIGHTDECK_HOME/benchmarks/balancer) and are reused across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from flightdeck.devtools.bench import parse_duration, recreate_database
from flightdeck.devtools.launch import free_port, stop_process_group
from flightdeck.devtools.results import write_json

HERE = Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "wrk" / "post_json.lua"
BIN = Path(sys.executable).parent
ARMS = ("direct", "nginx", "nginx-2")
TARGET = 0.8  # nginx req/s / direct req/s, same backend
DATA_START, DATA_END, ROWS_PER_DAY = "2026-01-01", "2026-01-31", 300
DEFAULT_DATABASE_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/flightdeck_bench_balancer"
ROUTES = {"default_endpoint": "default",
          "endpoints": {"default": {"policy": "single", "variants": {"live": {"alias": "champion"}}}}}


# ------------------------------------------------------------------------------ pure helpers
@dataclass
class Run:
    """One wrk run of one arm: requests per second, latency percentiles (seconds), failures."""

    arm: str
    round: int
    rps: float
    latency: dict[str, float] = field(default_factory=dict)
    non_2xx: int = 0
    socket_errors: int = 0
    load: float | None = None  # the machine's 1-minute load average as the run started

    @property
    def clean(self) -> bool:
        return self.non_2xx == 0 and self.socket_errors == 0


def parse_wrk(arm: str, round_: int, output: str) -> Run:
    """The figures of `wrk --latency` output; ValueError when it printed no summary."""
    rate = re.search(r"^Requests/sec:\s*([0-9.]+)", output, re.M)
    if not rate:
        raise ValueError(f"wrk printed no summary:\n{output.strip()[-800:]}")
    latency = {}
    block = output.split("Latency Distribution", 1)
    if len(block) == 2:
        for pct, value in re.findall(r"^\s*(\d+(?:\.\d+)?)%\s+([0-9.]+\w+)\s*$", block[1], re.M):
            latency[pct.removesuffix(".000").removesuffix(".0")] = parse_duration(value)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return Run(arm, round_, float(rate.group(1)), latency, int(non_2xx.group(1)) if non_2xx else 0,
               sum(map(int, errors.groups())) if errors else 0)


def schedule(rounds: int, arms: tuple[str, ...] = ARMS) -> list[tuple[int, str]]:
    """(round, arm) in the order they run: every arm once per round, the rounds one after another."""
    if rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {rounds}")
    return [(r, arm) for r in range(rounds) for arm in arms]


def summarise(runs: list[Run]) -> dict:
    """Per arm: median req/s and p99; the paired ratios per round and their medians; the verdict.

    A ratio is paired within a round (nginx_i / direct_i), so the machine's load in that round
    divides out; the verdict is the median paired ratio. An arm that answered any error fails it.
    """
    by_arm: dict[str, list[Run]] = {}
    for run in runs:
        by_arm.setdefault(run.arm, []).append(run)
    arms = {arm: {"rps": [r.rps for r in rs], "p99_ms": [1000 * r.latency.get("99", float("nan")) for r in rs],
                  "median_rps": statistics.median(r.rps for r in rs),
                  "median_p99_ms": statistics.median(1000 * r.latency.get("99", float("nan")) for r in rs),
                  "errors": sum(r.non_2xx + r.socket_errors for r in rs)}
            for arm, rs in by_arm.items()}
    direct = {r.round: r for r in by_arm.get("direct", [])}

    def paired(arm: str, key) -> list[float]:
        return [key(r) / key(direct[r.round]) for r in by_arm.get(arm, [])
                if r.round in direct and key(direct[r.round])]

    def rps(r: Run) -> float:
        return r.rps

    def p99(r: Run) -> float:
        return r.latency.get("99", 0.0)

    ratios = {}
    for arm in ("nginx", "nginx-2"):
        thr, lat = paired(arm, rps), paired(arm, p99)
        ratios[arm] = {"throughput_ratios": thr, "p99_ratios": lat,
                       "throughput_ratio": statistics.median(thr) if thr else None,
                       "p99_ratio": statistics.median(lat) if lat else None}
    value = ratios["nginx"]["throughput_ratio"]
    errors = arms.get("direct", {}).get("errors", 0) + arms.get("nginx", {}).get("errors", 0)
    passed = None if value is None else (value >= TARGET and errors == 0)
    note = "errors under load" if value is not None and value >= TARGET and errors else ""
    return {"arms": arms, "ratios": ratios,
            "target": {"name": "nginx_over_direct", "value": value, "target": f">= {TARGET:g}",
                       "pass": passed, "note": note}}


def report(summary: dict) -> str:
    lines = ["", f"{'arm':<9} {'req/s (median)':>15} {'p99 ms (median)':>16} {'errors':>7}   per round req/s"]
    for arm in ARMS:
        a = summary["arms"].get(arm)
        if a:
            lines.append(f"{arm:<9} {a['median_rps']:>15,.0f} {a['median_p99_ms']:>16.1f} {a['errors']:>7}   "
                         + ", ".join(f"{v:,.0f}" for v in a["rps"]))
    lines.append("")
    for arm, label in (("nginx", "nginx (1 upstream) / direct"), ("nginx-2", "nginx (2 upstreams) / direct")):
        r = summary["ratios"][arm]
        if r["throughput_ratio"] is not None:
            lines.append(f"{label:<30} throughput {r['throughput_ratio']:.2f}x  p99 {r['p99_ratio']:.2f}x   "
                         f"(per round: {', '.join(f'{v:.2f}' for v in r['throughput_ratios'])})")
    t = summary["target"]
    verdict = "n/a" if t["pass"] is None else ("PASS" if t["pass"] else "MISS")
    shown = "n/a" if t["value"] is None else f"{t['value']:.2f}"
    lines.append(f"{verdict:<5} nginx / direct throughput {shown} (target {t['target']})"
                 + (f" - {t['note']}" if t["note"] else ""))
    lines.append("      nginx-2 / direct is information: two instances share the same two cores.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ model and body
def _child_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FLIGHTDECK_") and k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    env.update(FLIGHTDECK_HOME=str(home), PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false", PYTHONUNBUFFERED="1")
    return env


def _cli(args: list[str], env: dict[str, str], home: Path) -> None:
    print(f"  preparing: flightdeck {' '.join(args)}", flush=True)
    done = subprocess.run([str(BIN / "flightdeck"), *args], env=env, cwd=home, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"flightdeck {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def prepare(home: Path, env: dict[str, str]) -> Path:
    """Generated data and a registered champion (trained once through the CLI); the request body."""
    from flightdeck.data.partitions import list_partitions, read_partition
    from flightdeck.data.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES

    raw = home / "data" / "raw"
    if not list_partitions(raw):
        _cli(["generate-data", "--start", DATA_START, "--end", DATA_END, "--rows-per-day", str(ROWS_PER_DAY)],
             env, home)
    if not (home / ".trained").exists():
        _cli(["train", "--window-start", DATA_START, "--window-end", DATA_END], env, home)
        (home / ".trained").write_text("a champion is registered in this home's MLflow store\n")
    features = list(NUMERIC_FEATURES) + list(CATEGORICAL_FEATURES)
    frame = read_partition(raw, list_partitions(raw)[0])[features].dropna()
    body = home / "body.json"
    body.write_text(json.dumps({"dataframe_split": {"columns": features, "data": [frame.iloc[0].tolist()]}},
                               default=lambda v: v.item()))
    return body


# ------------------------------------------------------------------------------ processes
def _recreate_database(url: str) -> None:
    recreate_database(url)
    from flightdeck.serving import db

    db.upgrade(url)  # once, so the two instances starting together do not race on the schema
    db.dispose_engine(url)


def _wait_ready(name: str, proc: subprocess.Popen, url: str, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited with {proc.returncode}; log {log}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.25)
    raise SystemExit(f"{name} not ready after {timeout:g} s; log {log}:\n{log.read_text()[-2000:]}")


def _probe(url: str, body: Path) -> None:
    request = urllib.request.Request(url, data=body.read_bytes(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{url} answered HTTP {exc.code}: {exc.read()[:300]!r}") from exc


def _wrk(wrk: str, url: str, body: Path, threads: int, connections: int, seconds: float) -> str:
    done = subprocess.run([wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
                           "--latency", "-s", str(WRK_SCRIPT), url],
                          env={**os.environ, "WRK_BODY_FILE": str(body)}, capture_output=True, text=True,
                          timeout=seconds + 60)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def main(argv: list[str] | None = None) -> dict:
    args = _parse(argv)
    from flightdeck.config import get_settings
    from flightdeck.platform import balancer

    wrk = shutil.which(args.wrk)
    if not wrk:
        raise SystemExit(f"{args.wrk} not found: apt-get install wrk")
    balancer.nginx_binary()  # a clear error when nginx is missing
    home = (args.home or get_settings().home / "benchmarks" / "balancer").resolve()
    (home / "logs").mkdir(parents=True, exist_ok=True)
    env = _child_env(home)
    body = prepare(home, env)
    _recreate_database(args.database_url)
    routes = home / "routes.yaml"
    routes.write_text(json.dumps(ROUTES))  # JSON is YAML
    gateway_env = {**env, "FLIGHTDECK_GATEWAY_DATABASE_URL": args.database_url,
                   "FLIGHTDECK_ADMIN_TOKENS": json.dumps({"bench": secrets.token_urlsafe(24)}),
                   "FLIGHTDECK_CACHE_BACKEND": "memory" if args.cache else "off"}
    started: list[subprocess.Popen] = []
    try:
        ports = [free_port(), free_port()]
        while ports[1] == ports[0]:
            ports[1] = free_port()
        for name, port in zip(("a", "b"), ports, strict=True):
            log = home / "logs" / f"gateway-{name}.log"
            with open(log, "wb") as out:
                started.append(subprocess.Popen(
                    [str(BIN / "flightdeck"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers",
                     str(args.workers), "--grpc-port", "0", "--routes", str(routes)],
                    env=gateway_env, cwd=home, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True))
        for name, port, proc in zip(("a", "b"), ports, started, strict=True):
            _wait_ready(f"gateway {name}", proc, f"http://127.0.0.1:{port}/v2/health/ready",
                        home / "logs" / f"gateway-{name}.log")
        urls = {"direct": f"http://127.0.0.1:{ports[0]}/invocations"}
        for arm, upstream_ports in (("nginx", ports[:1]), ("nginx-2", ports)):
            lb_port = free_port()
            prefix = home / arm
            config = balancer.write_config(prefix, [balancer.Upstream("127.0.0.1", p) for p in upstream_ports],
                                           lb_port)
            started.append(balancer.start_nginx(config, prefix))
            urls[arm] = f"http://127.0.0.1:{lb_port}/invocations"
            _wait_ready(arm, started[-1], f"http://127.0.0.1:{lb_port}/v2/health/live", prefix / "error.log")
        for url in urls.values():
            _probe(url, body)
        print(f"  instances on {ports}, {args.workers} workers each; wrk -t{args.threads} -c{args.connections} "
              f"-d{args.duration:g}s; {args.rounds} rounds of {', '.join(ARMS)}", flush=True)
        if args.warmup > 0:
            for arm in ARMS:
                _wrk(wrk, urls[arm], body, args.threads, args.connections, args.warmup)
        runs = []
        load_before = os.getloadavg()[0]
        for round_, arm in schedule(args.rounds):
            load = os.getloadavg()[0]
            run = parse_wrk(arm, round_, _wrk(wrk, urls[arm], body, args.threads, args.connections, args.duration))
            run.load = load
            runs.append(run)
            print(f"  round {round_ + 1} {arm:<8} {run.rps:>8,.0f} req/s  p99 {1000 * run.latency.get('99', 0):.1f} ms"
                  f"  errors {run.non_2xx + run.socket_errors}  (load average {load:.1f})", flush=True)
        load_after = os.getloadavg()[0]
    finally:
        for proc in reversed(started):
            stop_process_group(proc, timeout=20)
    summary = summarise(runs)
    print(report(summary))
    print(f"note: 1-minute load average {load_before:.1f} before, {load_after:.1f} after on {os.cpu_count()} cores "
          "(the gateways, nginx and wrk themselves keep about 2 busy); more means other work shared the machine")
    result = {"settings": {"workers": args.workers, "threads": args.threads, "connections": args.connections,
                           "duration_s": args.duration, "rounds": args.rounds, "cache": args.cache},
              "load_average": {"before": load_before, "after": load_after, "cores": os.cpu_count()},
              "runs": [vars(r) for r in runs], **summary}
    if args.json:
        write_json(args.json, "balancer", argv, result)
    return result


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="direct / nginx / nginx-2 rounds (default 3)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each wrk run (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per arm (default 3)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers per instance (default 2)")
    parser.add_argument("--cache", action="store_true", help="turn the gateway's response cache on")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL,
                        help="PostgreSQL database the instances share (dropped and created afresh)")
    parser.add_argument("--home", type=Path, help="data, model and logs (default FLIGHTDECK_HOME/benchmarks/balancer)")
    parser.add_argument("--wrk", default="wrk")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    for name in ("rounds", "duration", "connections", "threads", "workers"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive, got {getattr(args, name)}")
    return args


if __name__ == "__main__":
    main()
