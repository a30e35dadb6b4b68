"""Real-time serving benchmark: single-row requests against three servers of the same model.

Measures, in one run, one server at a time, with the same load generator (wrk, closed loop,
`--connections` connections) and the same number of worker processes:

* mlflow     - `mlflow models serve --env-manager local --workers N` on the registered model;
* ceiling    - a bare FastAPI + ONNX Runtime handler of a few lines (benchmarks/serving_ceiling.py)
               under uvicorn (`--workers N`, uvloop, httptools: the HTTP server `flightdeck serve`
               runs): orjson in and out, one intra-op thread, nothing else;
* ceiling-granian - the same handler under granian (HTTP in Rust), a server the gateway was
               measured on and left (information: what the server alone is worth);
* asgi       - the same handler without FastAPI, under uvicorn (information: the floor under any
               framework);
* flightdeck - `flightdeck serve --workers N` with a canary route table (90/10 between two
               versions, 10 % shadow), PostgreSQL route store / stats / prediction log,
               Prometheus metrics, response cache off;
* route-change - a fixed-rate open-loop run against the gateway while a thread replaces
               the route table every `--route-interval` seconds through the admin API.

Then prints each ratio next to its target with PASS/MISS:
    python benchmarks/serving.py [--workers 2] [--connections 16] [--duration 20]
                                 [--only mlflow --only ceiling ...] [--home DIR]

Generated data, the registered model versions and the request bodies live in --home
(default: FLIGHTDECK_HOME/benchmarks/serving) and are reused across runs.
"""

from __future__ import annotations

# Only light imports at module level: heavy ones happen inside the functions that need them.
import argparse
import atexit
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from flightdeck.devtools.bench import parse_duration, recreate_database
from flightdeck.devtools.results import write_json

HERE = Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "wrk" / "post_json.lua"
BIN = Path(sys.executable).parent  # the virtualenv's bin: mlflow, granian, uvicorn, flightdeck

SERVERS = ("mlflow", "ceiling", "ceiling-granian", "asgi", "flightdeck")
RUNS = (*SERVERS, "route-change")
TARGETS = {
    "over_ceiling": (">=", 1.0),  # the gateway, everything on, at least the bare handler's throughput
    "over_mlflow": (">=", 6.0),
    "p99_vs_mlflow": ("<=", 0.10),
    "route_dropped": ("==", 0),
    "route_5xx": ("==", 0),
}
RATIO_LABELS = {
    "over_ceiling": "flightdeck req/s / ceiling req/s",
    "over_mlflow": "flightdeck req/s / mlflow req/s",
    "p99_vs_mlflow": "flightdeck p99 / mlflow p99",
    "route_dropped": "route-change run: dropped requests",
    "route_5xx": "route-change run: 5xx answers",
}
DATA_START, DATA_END, ROWS_PER_DAY = "2026-01-01", "2026-02-28", 500
SECOND_SEED = "43"  # the second version: same data and model type, another seed
DEFAULT_DATABASE_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/flightdeck_bench"
READY_TIMEOUT = 180.0


# ------------------------------------------------------------------------------ results
@dataclass
class WrkResult:
    """What wrk --latency printed, in seconds and counts."""

    requests: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    latency: dict[str, float] = field(default_factory=dict)  # "50" -> seconds
    non_2xx: int = 0  # wrk counts 3xx as success; none of these servers redirects
    socket_errors: dict[str, int] = field(default_factory=dict)  # connect/read/write/timeout

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values())


@dataclass
class ServerResult:
    name: str
    wrk: WrkResult | None = None
    cpu: dict[str, float] = field(default_factory=dict)  # cores used during the run: server, load, other
    notes: list[str] = field(default_factory=list)
    failed: str | None = None


@dataclass
class RouteChangeResult:
    rate: float
    seconds: float
    scheduled: int = 0
    sent: int = 0
    ok: int = 0
    statuses: dict[int, int] = field(default_factory=dict)  # non-2xx status -> count
    connection_errors: int = 0
    timeouts: int = 0
    not_sent: int = 0  # the concurrency bound was full at the request's slot
    latency: dict[str, float] = field(default_factory=dict)  # from the scheduled time
    changes: list[dict] = field(default_factory=list)
    progression: list[dict] = field(default_factory=list)
    late_old: list[dict] = field(default_factory=list)
    final_version: int | None = None
    cpu: dict[str, float] = field(default_factory=dict)
    failed: str | None = None

    @property
    def non_2xx(self) -> int:
        return sum(self.statuses.values())

    @property
    def five_xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def dropped(self) -> int:
        """Requests that did not get a 2xx answer, for whatever reason."""
        return self.non_2xx + self.connection_errors + self.timeouts + self.not_sent


# ------------------------------------------------------------------------------ pure helpers
def parse_wrk(output: str) -> WrkResult:
    """Parse the text wrk prints with --latency; raise ValueError if it has no summary."""
    result = WrkResult()
    summary = re.search(r"^\s*(\d+) requests in ([0-9.]+\w+),", output, re.M)
    rate = re.search(r"^Requests/sec:\s*([0-9.]+)", output, re.M)
    if not summary or not rate:
        raise ValueError(f"wrk printed no summary:\n{output.strip()[-800:]}")
    result.requests = int(summary.group(1))
    result.seconds = parse_duration(summary.group(2))
    result.rps = float(rate.group(1))
    block = output.split("Latency Distribution", 1)
    if len(block) == 2:
        for pct, value in re.findall(r"^\s*(\d+(?:\.\d+)?)%\s+([0-9.]+\w+)\s*$", block[1], re.M):
            result.latency[pct.removesuffix(".000").removesuffix(".0")] = parse_duration(value)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    result.non_2xx = int(non_2xx.group(1)) if non_2xx else 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if errors:
        result.socket_errors = dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups()),
                                        strict=True))
    return result


def verdict(value: float | None, op: str, target: float) -> bool | None:
    """Whether `value op target` holds; None when there is no value."""
    if value is None:
        return None
    return {">=": value >= target, "<=": value <= target, "==": value == target}[op]


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def evaluate(results: dict[str, ServerResult], route: RouteChangeResult | None) -> list[dict]:
    """Each ratio with its target; a server that answered errors under load cannot pass."""

    def measured(name: str) -> WrkResult | None:
        result = results.get(name)
        return result.wrk if result is not None and result.failed is None else None

    fd, ceiling, mlflow = measured("flightdeck"), measured("ceiling"), measured("mlflow")
    values = {
        "over_ceiling": _div(fd and fd.rps, ceiling and ceiling.rps),
        "over_mlflow": _div(fd and fd.rps, mlflow and mlflow.rps),
        "p99_vs_mlflow": _div(fd and fd.latency.get("99"), mlflow and mlflow.latency.get("99")),
        "route_dropped": None if route is None or route.failed else route.dropped,
        "route_5xx": None if route is None or route.failed else route.five_xx,
    }
    unclean = fd is not None and (fd.non_2xx or fd.errors)
    ratios = []
    for name, value in values.items():
        op, target = TARGETS[name]
        passed = verdict(value, op, target)
        note = ""
        if unclean and name in ("over_ceiling", "over_mlflow", "p99_vs_mlflow") and passed:
            passed, note = False, "flightdeck answered errors under load"
        ratios.append({"name": name, "value": value, "target": f"{op} {target:g}", "pass": passed, "note": note})
    return ratios


def percentiles(values: list[float], points: tuple[float, ...] = (50, 90, 99, 99.9)) -> dict[str, float]:
    """Nearest-rank percentiles of `values` keyed "50", "99", "99.9"."""
    ordered = sorted(values)
    if not ordered:
        return {}
    out = {}
    for p in points:
        rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100)
        out[f"{p:g}"] = ordered[int(min(rank, len(ordered))) - 1]
    return out


# Where a sampled stack of a gateway worker goes, checked from the innermost frame outwards
# (py-spy's collapsed frames read "function (module/file.py:line)"); the first match wins.
PROFILE_CATEGORIES = (
    ("ONNX Runtime (live and shadow scoring)", r"Session\.run \("),
    ("prediction-log writer thread (COPY text, psycopg2)", r"PredictionLogWriter\._run \("),
    ("background threads (running sums, heartbeat)", r"Gateway\._publish_once|\(concurrent/futures/thread\.py"),
    ("shadow scoring, outside the model", r"Gateway\.(_drain_shadow|_score_shadows|_score_shadow|_shadow_scored) "),
    ("recording: running sums", r"RunningStats\.record "),
    ("recording: prediction-log submit", r"PredictionLogWriter\.submit "),
    ("recording: Prometheus", r"\(prometheus_client/|\(flightdeck/serving/metrics\.py"),
    ("recording: row JSON and digest", r"^_row_inputs"),
    ("recording: shadow enqueue, other", r"Gateway\.(_mirror|_record) "),
    ("columns to feeds (validation, numpy)", r"InputPlan\.feeds |ServedModel\.feeds "),
    ("routing policy", r"Router\.choose "),
    ("request parsing (orjson, dataframe_split)", r"^(parse_json|columns_from_mlflow|_from_split) "),
    ("answer (orjson, headers, ASGI send)", r"^(json_reply|_send|_answer_headers) "),
    ("gateway bookkeeping", r"\(flightdeck/serving/gateway\.py"),
    ("request glue (route match, headers, ids)", r"\(flightdeck/serving/scoring\.py"),
    ("FastAPI / Starlette", r"\((fastapi|starlette)/"),
    ("HTTP server and event loop", r"\((uvicorn|granian|asyncio|uvloop)/"),
)


def profile_shares(collapsed: str) -> list[tuple[str, float]]:
    """(category, share of samples) of py-spy's collapsed stacks ("frame;frame;... count" per
    line), largest first; a stack no category matches counts as "other"."""
    patterns = [(name, re.compile(rx)) for name, rx in PROFILE_CATEGORIES]
    counts: dict[str, int] = {}
    for line in collapsed.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        category = next((name for frame in reversed(stack.split(";")) for name, rx in patterns if rx.search(frame)),
                        "other")
        counts[category] = counts.get(category, 0) + int(count)
    total = sum(counts.values())
    return sorted(((name, n / total) for name, n in counts.items()), key=lambda item: -item[1]) if total else []


def canary_table(model: str, stable: str, canary: str, weights: tuple[float, float] = (90, 10),
                 shadow_percent: float = 10) -> dict:
    """The route table the gateway starts with: a weighted canary plus a shadow."""
    return {"endpoints": {"default": {
        "policy": "canary",
        "variants": {"stable": {"model": model, "version": stable},
                     "canary": {"model": model, "version": canary}},
        "weights": {"stable": weights[0], "canary": weights[1]},
        "shadow": {"variant": "canary", "percent": shadow_percent}}}}


def blue_green_table(model: str, stable: str, canary: str, active: str, shadow_percent: float = 10) -> dict:
    other = "canary" if active == "stable" else "stable"
    return {"endpoints": {"default": {
        "policy": "blue_green",
        "variants": {"stable": {"model": model, "version": stable},
                     "canary": {"model": model, "version": canary}},
        "active": active,
        "shadow": {"variant": other, "percent": shadow_percent}}}}


def route_schedule(model: str, stable: str, canary: str, changes: int) -> list[tuple[str, dict]]:
    """(label, table) of each replacement: 50/50 and 90/10 in turn, with one blue-green switch."""
    cycle = [("canary 50/50", canary_table(model, stable, canary, (50, 50))),
             ("canary 90/10", canary_table(model, stable, canary, (90, 10))),
             ("blue-green, canary live", blue_green_table(model, stable, canary, "canary")),
             ("blue-green, stable live", blue_green_table(model, stable, canary, "stable"))]
    return [cycle[k % len(cycle)] for k in range(changes)]


def expected_shares(table: dict) -> dict[str, float]:
    """variant -> share of live traffic the `default` endpoint of `table` should get."""
    endpoint = table["endpoints"]["default"]
    if endpoint["policy"] == "blue_green":
        return {endpoint["active"]: 1.0}
    if endpoint["policy"] in ("canary", "ab"):
        total = sum(endpoint["weights"].values())
        return {name: w / total for name, w in endpoint["weights"].items()}
    return {}


def version_progression(observations: list[tuple[float, object, object]]) -> tuple[list[dict], list[dict]]:
    """Route versions seen in answers, in order of first appearance.

    observations: (seconds since the start, route_version, variant) of each 2xx answer.
    Returns (per-version summaries, answers from an older version after a newer one was seen).
    """
    by_version: dict[object, dict] = {}
    order: list[object] = []
    newest_seen = None
    late_old: dict[object, dict] = {}
    for t, version, variant in sorted(observations, key=lambda o: o[0]):
        entry = by_version.get(version)
        if entry is None:
            entry = by_version[version] = {"version": version, "count": 0, "first": t, "last": t, "variants": {}}
            order.append(version)
        entry["count"] += 1
        entry["last"] = t
        entry["variants"][variant] = entry["variants"].get(variant, 0) + 1
        if isinstance(version, int):
            if newest_seen is None or version > newest_seen:
                newest_seen = version
            elif version < newest_seen:
                late = late_old.setdefault(version, {"version": version, "count": 0, "last": t, "newest": newest_seen})
                late["count"] += 1
                late["last"] = t
    return [by_version[v] for v in order], list(late_old.values())


# ------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print the table and ratios; return them as a dict."""
    args = _parse(argv)
    home = Path(args.home).expanduser().resolve() if args.home else _default_home()
    runs = [r for r in RUNS if r in (args.only or RUNS)]
    threads = max(1, min(args.threads, args.connections - 1))
    print(f"serving benchmark: {', '.join(runs)}; {args.workers} workers each; wrk {threads} threads, "
          f"{args.connections} connections, {args.warmup:g} s warm-up + {args.duration:g} s per server; "
          f"{os.cpu_count()} cores; home {home}", flush=True)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    _install_signal_handlers()
    home.mkdir(parents=True, exist_ok=True)
    (home / "logs").mkdir(exist_ok=True)
    env = _child_env(home)
    model = _ensure_model(home, env)
    print(f"model {model['name']}: versions {model['stable']} (stable) and {model['canary']} (canary); "
          f"{len(model['columns'])} input columns; one request row from ds={DATA_START}", flush=True)
    results: dict[str, ServerResult] = {}
    route: RouteChangeResult | None = None
    try:
        if "mlflow" in runs:
            results["mlflow"] = _measure_mlflow(home, env, model, args, threads)
        if "ceiling" in runs:
            results["ceiling"] = _measure_ceiling(home, env, model, args, threads, "ceiling", "app")
        if "ceiling-granian" in runs:
            results["ceiling-granian"] = _measure_ceiling(home, env, model, args, threads, "ceiling-granian", "app",
                                                          server="granian")
        if "asgi" in runs:
            results["asgi"] = _measure_ceiling(home, env, model, args, threads, "asgi", "asgi_app")
        if "flightdeck" in runs:
            results["flightdeck"] = _measure_flightdeck(home, env, model, args, threads, cache=False)
            if args.cache_run:
                results["flightdeck-cache"] = _measure_flightdeck(home, env, model, args, threads, cache=True)
        if "route-change" in runs:
            route = _measure_route_change(home, env, model, args, threads)
    finally:
        _stop_all()
    stray = _stray_processes()
    ratios = evaluate(results, route)
    _print(results, route, ratios, args)
    print(f"\nservers stopped; stray processes: {', '.join(stray) if stray else 'none'}")
    load = (load_before, os.getloadavg()[0])
    print(f"note: 1-minute load average {load[0]:.1f} before, {load[1]:.1f} after on {os.cpu_count()} "
          "cores; wrk and every server share these cores, so compare runs on a quiet machine.")
    print(f"total {time.perf_counter() - started:.0f} s")
    report = {"results": {k: {"wrk": v.wrk.__dict__ if v.wrk else None, "cpu": v.cpu, "failed": v.failed,
                              "notes": v.notes} for k, v in results.items()},
              "route_change": route.__dict__ if route else None, "ratios": ratios, "stray": stray,
              "load_average": load}
    if args.json:
        write_json(args.json, "serving", argv, report)
    return report


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes of every server")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (kept below --connections)")
    parser.add_argument("--duration", type=float, default=20, help="seconds of each measured wrk run")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of wrk warm-up before each run")
    parser.add_argument("--only", action="append", choices=RUNS,
                        help="measure only this (repeatable); default all")
    parser.add_argument("--home", default=None,
                        help="data, models and logs (default FLIGHTDECK_HOME/benchmarks/serving)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL,
                        help="PostgreSQL database for the gateway, dropped and recreated per gateway start")
    parser.add_argument("--cache-run", action="store_true",
                        help="also measure the gateway with its response cache on (information only)")
    parser.add_argument("--route-rate", type=float, default=500, help="requests/s of the route-change run")
    parser.add_argument("--route-duration", type=float, default=60, help="seconds of the route-change run")
    parser.add_argument("--route-interval", type=float, default=10, help="seconds between route changes")
    parser.add_argument("--route-max-in-flight", type=int, default=256,
                        help="concurrency bound of the fixed-rate client")
    parser.add_argument("--quiet-wait", type=float, default=120,
                        help="before each run, wait up to this many seconds for other work to stop "
                             "(machine busier than 0.3 cores while our servers idle); 0 turns it off")
    parser.add_argument("--retries", type=int, default=2,
                        help="measure a server again when other work took > 0.25 cores during its run")
    parser.add_argument("--profile", metavar="PATH",
                        help="after the gateway's measured run, sample its busiest worker with py-spy under the "
                             "same load for --duration s; write the collapsed stacks to PATH, print the shares")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    parser.add_argument("--json", metavar="PATH", help="also write the result, the command and the date as JSON")
    args = parser.parse_args(argv)
    if args.connections < 2 or args.workers < 1 or args.duration <= 0:
        parser.error("need --connections >= 2, --workers >= 1 and --duration > 0")
    return args


def _default_home() -> Path:
    from flightdeck.config import get_settings

    return get_settings().home / "benchmarks" / "serving"


def _child_env(home: Path) -> dict[str, str]:
    """The environment of every command we start: our virtualenv first, only our FLIGHTDECK_* settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FLIGHTDECK_") and k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    env.update(FLIGHTDECK_HOME=str(home), PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false", PYTHONUNBUFFERED="1")
    return env


def _tracking_uri(home: Path) -> str:
    return f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"


# ------------------------------------------------------------------------------ model and bodies
def _ensure_model(home: Path, env: dict[str, str]) -> dict:
    """Two registered versions of the model (trained through the CLI once), the stable one's
    ONNX file for the ceiling, one real request row and the request bodies."""
    from flightdeck.config import Settings
    from flightdeck.data.partitions import list_partitions
    from flightdeck.registry import TRAINING_KEY, Registry

    name = Settings.model_fields["model_name"].default
    raw = home / "data" / "raw"
    days = list_partitions(raw)
    if not days or f"{days[0]}" > DATA_START or f"{days[-1]}" < DATA_END:
        _cli(["generate-data", "--start", DATA_START, "--end", DATA_END, "--rows-per-day", str(ROWS_PER_DAY)],
             env, home)
    (home / "mlflow").mkdir(exist_ok=True)
    registry = Registry(_tracking_uri(home), (home / "mlflow" / "artifacts").as_uri(),
                        Settings.model_fields["experiment_name"].default)

    def versions() -> list[str]:
        try:
            found = registry.client.search_model_versions(f"name = '{name}'")
        except Exception:  # no registered model yet
            return []
        return sorted((str(v.version) for v in found), key=int)

    window = ["--window-start", DATA_START, "--window-end", DATA_END]
    if not versions():
        _cli(["train", *window], env, home)
    if len(versions()) < 2:
        out = _cli(["train", *window, "--model-type", "logistic_regression", "--margin", "0"],
                   {**env, "FLIGHTDECK_SEED": SECOND_SEED}, home)
        if "registration" not in out:
            # The CLI registers only a model that beats the champion (margin >= 0); the canary
            # needs a second version either way, so register the run's model as it is.
            key = registry.client.get_run(out["mlflow_run_id"]).data.tags[TRAINING_KEY]
            registry.register(name, out["model_uri"], out["mlflow_run_id"], key,
                              description="serving benchmark: second version for the canary")
            print(f"  registered the second training run as a new version ({out['decision']['reason']})")
    stable, canary = versions()[:2]
    models = home / "models"
    models.mkdir(exist_ok=True)
    onnx_path = models / f"{name}-v{stable}.onnx"
    if not onnx_path.exists():
        onnx_path.write_bytes(registry.download_onnx(name, stable)[1])
    columns, row = _request_row(raw, onnx_path)
    bodies = home / "bodies"
    bodies.mkdir(exist_ok=True)
    split = bodies / "dataframe_split.json"
    split.write_text(json.dumps({"dataframe_split": {"columns": columns, "data": [row]}}))
    return {"name": name, "stable": stable, "canary": canary, "onnx": onnx_path, "columns": columns,
            "row": row, "split_body": split, "registry": registry}


def _cli(args: list[str], env: dict[str, str], home: Path) -> dict:
    """Run `flightdeck ARGS` in `home`; returns the JSON it printed (if any)."""
    print(f"  preparing the model: flightdeck {' '.join(args)}", flush=True)
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "flightdeck"), *args], env=env, cwd=home, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"flightdeck {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    print(f"  ... done in {time.perf_counter() - started:.0f} s", flush=True)
    start = done.stdout.find("{")
    return json.loads(done.stdout[start:]) if start >= 0 else {}


def _request_row(raw: Path, onnx_path: Path) -> tuple[list[str], list]:
    """The model's input columns and the values of the first raw row of the first day."""
    from flightdeck import runtime
    from flightdeck.data.partitions import read_partition

    columns = runtime.input_columns(runtime.load_session(onnx_path))
    first = read_partition(raw, DATA_START).iloc[0]
    row = [v if isinstance(v, str) else float(v) for v in (first[c] for c in columns)]
    return columns, row


# ------------------------------------------------------------------------------ processes
_RUNNING: list[subprocess.Popen] = []
_STARTED_GROUPS: set[int] = set()


def _install_signal_handlers() -> None:
    def terminate(signum, frame):
        raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the servers

    signal.signal(signal.SIGTERM, terminate)
    # Ctrl-C raises KeyboardInterrupt even when started from a shell that ignores SIGINT in background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    atexit.register(_stop_all)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_members(pgid: int) -> list[str]:
    """Live (non-zombie) processes of a process group, as "pid command"."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                members.append(f"{entry.name} {cmd[:100]}")
        except (OSError, ValueError, IndexError):
            continue
    return members


def _stray_processes() -> list[str]:
    return [m for pgid in sorted(_STARTED_GROUPS) for m in _group_members(pgid)]


def _group_ticks(pgid: int) -> int:
    """utime + stime (clock ticks) of the live processes of a process group."""
    ticks = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()
                if int(fields[2]) == pgid:
                    ticks += int(fields[11]) + int(fields[12])
            except (OSError, ValueError, IndexError):
                continue
    return ticks


def cpu_split(start: dict[str, float], end: dict[str, float]) -> dict[str, float]:
    """Cores used between two samples: by the server, by the load generator (our children and this
    process), and by everything else on the machine (other work skews the figures)."""
    wall = end["wall"] - start["wall"]
    if wall <= 0:
        return {}
    used = {k: end[k] - start[k] for k in ("busy", "server", "children", "self")}
    load = used["children"] + used["self"]
    return {"server": used["server"] / wall, "load": load / wall,
            "other": max(0.0, used["busy"] - used["server"] - load) / wall}


class CpuMeter:
    """Samples /proc around a run; `cores` is `cpu_split` of the two samples."""

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        self.cores: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        hz = os.sysconf("SC_CLK_TCK")
        with open("/proc/stat") as f:
            cpu = [int(x) for x in f.readline().split()[1:]]
        busy = sum(cpu[:3]) + sum(cpu[5:8])  # user nice system, irq softirq steal
        children, me = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
        return {"wall": time.monotonic(), "busy": busy / hz, "server": _group_ticks(self.pgid) / hz,
                "children": children.ru_utime + children.ru_stime, "self": me.ru_utime + me.ru_stime}

    def __enter__(self) -> CpuMeter:
        self._start = self._sample()
        return self

    def __exit__(self, *exc_info) -> None:
        self.cores = cpu_split(self._start, self._sample())


@contextmanager
def _server(name: str, cmd: list[str], env: dict[str, str], cwd: Path, log: Path, ready_url: str):
    """Start `cmd` in its own process group, wait until `ready_url` answers 200, stop the group after."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    _RUNNING.append(proc)
    _STARTED_GROUPS.add(proc.pid)
    try:
        _wait_ready(name, proc, ready_url, log)
        yield proc
    finally:
        _stop(proc)


def _wait_ready(name: str, proc: subprocess.Popen, url: str, log: Path) -> None:
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < READY_TIMEOUT:
        if proc.poll() is not None:
            raise ServerFailed(f"{name} exited with {proc.returncode} before it was ready; log {log}:\n"
                               f"{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    print(f"  {name} ready after {time.monotonic() - started:.1f} s", flush=True)
                    return
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.25)
    raise ServerFailed(f"{name} not ready after {READY_TIMEOUT:.0f} s (last answer from {url}: {last}); "
                       f"log {log}:\n{_tail(log)}")


class ServerFailed(Exception):
    """A server that did not start, or answered the probe request with an error."""


def _stop(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM the process group, SIGKILL whatever is left after `grace` seconds."""
    pgid = proc.pid
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                continue
            if not _group_members(pgid):
                break
            time.sleep(0.1)
        if proc.poll() is not None and not _group_members(pgid):
            break
    if proc in _RUNNING:
        _RUNNING.remove(proc)


def _stop_all() -> None:
    for proc in list(_RUNNING):
        _stop(proc)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _post(url: str, body: bytes, headers: dict[str, str] | None = None, method: str = "POST",
          timeout: float = 30) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _probe(name: str, url: str, body: Path) -> tuple[int, bytes]:
    status, answer = _post(url, body.read_bytes())
    print(f"  {name} probe: HTTP {status} {answer[:200].decode(errors='replace')}", flush=True)
    return status, answer


def _wrk(name: str, url: str, body: Path, args: argparse.Namespace, threads: int, home: Path,
         seconds: float) -> WrkResult:
    cmd = [args.wrk, f"-t{threads}", f"-c{args.connections}", f"-d{seconds:g}s", "--timeout", "10s",
           "--latency", "-s", str(WRK_SCRIPT), url]
    done = subprocess.run(cmd, env={**os.environ, "WRK_BODY_FILE": str(body)}, capture_output=True, text=True,
                          timeout=seconds + 60)
    (home / "logs" / f"wrk-{name}.txt").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise ServerFailed(f"wrk failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return parse_wrk(done.stdout)


def _busy_cores(seconds: float = 1.0) -> float:
    """Cores the whole machine keeps busy over `seconds` (this process sleeps meanwhile)."""
    def busy() -> float:
        with open("/proc/stat") as f:
            cpu = [int(x) for x in f.readline().split()[1:]]
        return (sum(cpu[:3]) + sum(cpu[5:8])) / os.sysconf("SC_CLK_TCK")

    before = busy()
    time.sleep(seconds)
    return (busy() - before) / seconds


def _wait_quiet(name: str, args: argparse.Namespace, notes: list[str]) -> None:
    """Wait (up to --quiet-wait s) until other work leaves the machine nearly idle."""
    if args.quiet_wait <= 0:
        return
    deadline = time.monotonic() + args.quiet_wait
    cores = _busy_cores()
    if cores <= 0.3:
        return
    print(f"  {name}: the machine is busy ({cores:.2f} cores) with other work; waiting up to "
          f"{args.quiet_wait:g} s for it to quiet down", flush=True)
    while time.monotonic() < deadline:
        cores = _busy_cores(2.0)
        if cores <= 0.3:
            return
    notes.append(f"other work kept {cores:.2f} cores busy before this run; measured anyway")


def _load(name: str, url: str, body: Path, args: argparse.Namespace, threads: int, home: Path,
          result: ServerResult, server: subprocess.Popen) -> None:
    """Warm-up, then the measured wrk run (with the CPU each side used). A run during which other
    work took more than a quarter of a core is repeated (up to --retries times); the least
    disturbed run is kept."""
    _wait_quiet(name, args, result.notes)
    if args.warmup > 0:
        _wrk(f"{name}-warmup", url, body, args, threads, home, args.warmup)
    for attempt in range(args.retries + 1):
        with CpuMeter(server.pid) as meter:
            w = _wrk(name, url, body, args, threads, home, args.duration)
        if result.wrk is None or meter.cores.get("other", 0) < result.cpu.get("other", 0):
            result.wrk, result.cpu = w, meter.cores
        other = result.cpu.get("other", 0)
        if other <= 0.25 or attempt == args.retries:
            break
        print(f"  {name}: other work took {other:.2f} cores during the run; measuring again", flush=True)
        _wait_quiet(name, args, [])
    w = result.wrk
    print(f"  {name}: {w.rps:,.0f} req/s, p50 {_ms(w.latency.get('50'))} ms, p99 {_ms(w.latency.get('99'))} ms, "
          f"non-2xx {w.non_2xx}, socket errors {w.errors}", flush=True)


# ------------------------------------------------------------------------------ the servers
def _measure_mlflow(home: Path, env: dict, model: dict, args, threads: int) -> ServerResult:
    """`mlflow models serve` on the very version the train_register stages registered (no copy,
    no re-saved artifact), fed the same `dataframe_split` body as the gateway."""
    result = ServerResult("mlflow")
    uri = f"models:/{model['name']}/{model['stable']}"
    try:
        status, answer = _run_mlflow(home, env, uri, model["split_body"], args, threads, result)
        if not 200 <= status < 300:
            result.failed = (f"`mlflow models serve -m {uri}` answered HTTP {status} ({_mlflow_error(answer)}); a "
                             "version registered before the registry logged the tensor signature cannot be "
                             "scored by MLflow: remove the --home folder's mlflow/ to register afresh")
            print(f"  mlflow failed: {result.failed}", flush=True)
    except ServerFailed as exc:
        result.failed = str(exc)
        print(f"  mlflow failed: {exc}", flush=True)
    result.notes.append("the MLflow pyfunc ONNX session keeps ONNX Runtime's default thread pool (all cores) "
                        "in each worker, as `mlflow models serve` sets it up; its access log stays on (its default).")
    return result


def _run_mlflow(home, env, uri, body, args, threads, result) -> tuple[int, bytes]:
    """Serve `uri`; if the probe request is answered 2xx, warm up and measure."""
    port = _free_port()
    cmd = [str(BIN / "mlflow"), "models", "serve", "-m", uri, "--env-manager", "local",
           "--workers", str(args.workers), "--port", str(port), "--host", "127.0.0.1"]
    mlflow_env = {**env, "MLFLOW_TRACKING_URI": _tracking_uri(home)}
    url = f"http://127.0.0.1:{port}"
    with _server("mlflow", cmd, mlflow_env, home, home / "logs" / "mlflow.log", f"{url}/ping") as proc:
        status, answer = _probe("mlflow", f"{url}/invocations", body)
        if 200 <= status < 300:
            _load("mlflow", f"{url}/invocations", body, args, threads, home, result, proc)
    return status, answer


def _mlflow_error(answer: bytes) -> str:
    try:
        payload = json.loads(answer)
        trace = (payload.get("stack_trace") or "").strip().splitlines()
        return (trace[-1] if trace else payload.get("message", ""))[:200]
    except (ValueError, AttributeError):
        return answer[:200].decode(errors="replace")


def ceiling_command(app: str, server: str, workers: int, port: int) -> list[str]:
    """The command serving `serving_ceiling:<app>` with `workers` processes: uvicorn (the server
    `flightdeck serve` runs, so the ratio compares handlers, not servers) or granian."""
    if server == "granian":
        return [str(BIN / "granian"), "--interface", "asgi", "--workers", str(workers), "--loop", "uvloop",
                "--http", "1", "--no-ws", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                "--working-dir", str(HERE), f"serving_ceiling:{app}"]
    if server == "uvicorn":
        return [str(BIN / "uvicorn"), f"serving_ceiling:{app}", "--app-dir", str(HERE), "--workers", str(workers),
                "--loop", "uvloop", "--http", "httptools", "--host", "127.0.0.1", "--port", str(port),
                "--no-access-log", "--log-level", "warning"]
    raise ValueError(f"unknown server {server!r}: granian or uvicorn")


def _measure_ceiling(home: Path, env: dict, model: dict, args, threads: int, label: str,
                     app: str, server: str = "uvicorn") -> ServerResult:
    result = ServerResult(label)
    port = _free_port()
    cmd = ceiling_command(app, server, args.workers, port)
    url = f"http://127.0.0.1:{port}/"
    try:
        with _server(label, cmd, {**env, "SERVING_CEILING_MODEL": str(model["onnx"])}, home,
                     home / "logs" / f"{label}.log", url) as proc:
            status, answer = _probe(label, url, model["split_body"])
            if not 200 <= status < 300:
                raise ServerFailed(f"probe answered HTTP {status}: {answer[:300]!r}")
            _load(label, url, model["split_body"], args, threads, home, result, proc)
    except ServerFailed as exc:
        result.failed = str(exc)
        print(f"  {label} failed: {exc}", flush=True)
    return result


@contextmanager
def _gateway(home: Path, env: dict, model: dict, args, cache: bool, label: str):
    """`flightdeck serve` on a fresh PostgreSQL database with the canary route table; yields (url, token)."""
    import yaml

    recreate_database(args.database_url)
    routes = home / "routes.yaml"
    routes.write_text(yaml.safe_dump(canary_table(model["name"], model["stable"], model["canary"]),
                                     sort_keys=False))
    token = secrets.token_urlsafe(24)
    port = _free_port()
    gateway_env = {**env, "FLIGHTDECK_GATEWAY_DATABASE_URL": args.database_url,
                   "FLIGHTDECK_ADMIN_TOKENS": json.dumps({"bench": token}),
                   "FLIGHTDECK_CACHE_BACKEND": "memory" if cache else "off",
                   "FLIGHTDECK_GRPC_PORT": "0", "FLIGHTDECK_ROUTES_FILE": str(routes)}
    cmd = [str(BIN / "flightdeck"), "serve", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(args.workers)]
    url = f"http://127.0.0.1:{port}"
    with _server(label, cmd, gateway_env, home, home / "logs" / f"{label}.log",
                 f"{url}/v2/health/ready") as proc:
        yield url, token, proc


def _measure_flightdeck(home: Path, env: dict, model: dict, args, threads: int, cache: bool) -> ServerResult:
    label = "flightdeck-cache" if cache else "flightdeck"
    result = ServerResult(label)
    if not _gateway_available():
        result.failed = "`flightdeck serve` is not available in this checkout (flightdeck serve --help fails)"
        print(f"  {label}: skipped: {result.failed}", flush=True)
        return result
    try:
        with _gateway(home, env, model, args, cache, label) as (url, _token, proc):
            status, answer = _probe(label, f"{url}/invocations", model["split_body"])
            if not 200 <= status < 300:
                raise ServerFailed(f"probe answered HTTP {status}: {answer[:300]!r}")
            _load(label, f"{url}/invocations", model["split_body"], args, threads, home, result, proc)
            if args.profile and not cache:
                _profile(f"{url}/invocations", model["split_body"], args, threads, home, proc, result.notes)
            time.sleep(1.5)  # let the prediction-log writers flush before counting
            result.notes.extend(_database_rows(args.database_url))
    except ServerFailed as exc:
        result.failed = str(exc)
        print(f"  {label} failed: {exc}", flush=True)
    if cache:
        result.notes.append("response cache on: the fixed body is answered from the cache after the first "
                            "request, so this row is information only (not in the ratios).")
    return result


def _profile(url: str, body: Path, args, threads: int, home: Path, server: subprocess.Popen,
             notes: list[str]) -> None:
    """py-spy on the gateway worker that uses the most CPU, under wrk's load (a run apart from
    the measured one: sampling slows the worker). Without --idle, py-spy leaves out waiting
    threads; on a busy machine a runnable thread that waits for a core still counts."""
    def ticks(pid: int) -> int:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            return int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            return 0

    spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if spy is None:
        notes.append("--profile: py-spy is not installed (requirements.txt has it)")
        return
    load = threading.Thread(target=_wrk, args=("flightdeck-profile", url, body, args, threads, home,
                                               args.duration + 3), daemon=True)
    load.start()
    time.sleep(1.0)
    workers = [int(m.split(" ", 1)[0]) for m in _group_members(server.pid)]
    before = {pid: ticks(pid) for pid in workers if pid != server.pid}
    time.sleep(0.5)
    busiest = max(before, key=lambda pid: ticks(pid) - before[pid])
    done = subprocess.run([spy, "record", "--pid", str(busiest), "--duration", f"{max(1, int(args.duration))}",
                           "--rate", "250", "--nonblocking", "--format", "raw", "--output", args.profile],
                          capture_output=True, text=True)
    load.join()
    if done.returncode != 0:
        notes.append(f"--profile: py-spy failed ({done.returncode}): {done.stderr.strip()[-300:]}")
        return
    shares = profile_shares(Path(args.profile).read_text())
    print(f"  profile of gateway worker {busiest} ({args.profile}):", flush=True)
    for name, share in shares:
        print(f"    {share:6.1%}  {name}", flush=True)


def _gateway_available() -> bool:
    done = subprocess.run([str(BIN / "flightdeck"), "serve", "--help"], capture_output=True, text=True)
    return done.returncode == 0


def _database_rows(url: str) -> list[str]:
    """Row counts of the gateway's tables after a run (shows the prediction log was written)."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            counts = {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one()
                      for t in inspect(conn).get_table_names()}
    except Exception as exc:  # information only
        return [f"could not count the gateway's database rows: {exc}"]
    finally:
        engine.dispose()
    listed = ", ".join(f"{t} {n:,}" for t, n in sorted(counts.items()))
    return [f"gateway database rows after the run (warm-up + run + probe): {listed or 'no tables'}"]


# ------------------------------------------------------------------------------ route changes
def _measure_route_change(home: Path, env: dict, model: dict, args, threads: int) -> RouteChangeResult:
    result = RouteChangeResult(rate=args.route_rate, seconds=args.route_duration)
    if not _gateway_available():
        result.failed = "`flightdeck serve` is not available in this checkout (flightdeck serve --help fails)"
        print(f"  route-change: skipped: {result.failed}", flush=True)
        return result
    n_changes = max(0, int((args.route_duration - 1e-9) // args.route_interval))
    schedule = route_schedule(model["name"], model["stable"], model["canary"], n_changes)
    try:
        with _gateway(home, env, model, args, False, "flightdeck-route-change") as (url, token, proc):
            auth = {"Authorization": f"Bearer {token}"}
            status, answer = _post(f"{url}/admin/routes", b"", auth, method="GET")
            if status != 200:
                raise ServerFailed(f"GET /admin/routes answered HTTP {status}: {answer[:300]!r}")
            initial = json.loads(answer).get("version")
            print(f"  route table v{initial} in force; {n_changes} replacement(s) every "
                  f"{args.route_interval:g} s during {args.route_duration:g} s at {args.route_rate:g} req/s",
                  flush=True)
            status, answer = _probe("flightdeck-route-change", f"{url}/invocations", model["split_body"])
            if not 200 <= status < 300:
                raise ServerFailed(f"probe answered HTTP {status}: {answer[:300]!r}")
            _wait_quiet("route-change", args, [])
            if args.warmup > 0:
                _wrk("route-change-warmup", f"{url}/invocations", model["split_body"], args, threads, home,
                     args.warmup)
            tables = [("initial canary 90/10", canary_table(model["name"], model["stable"], model["canary"]))]
            with CpuMeter(proc.pid) as meter:
                _fixed_rate_with_changes(url, auth, model["split_body"].read_bytes(), schedule, args, result,
                                         initial)
            result.cpu = meter.cores
            status, answer = _post(f"{url}/admin/routes", b"", auth, method="GET")
            if status == 200:
                result.final_version = json.loads(answer).get("version")
            tables += schedule
            for entry in result.progression:
                label, table = _table_for_version(entry["version"], initial, result.changes, tables)
                entry["table"] = label
                entry["expected"] = expected_shares(table) if table else {}
    except ServerFailed as exc:
        result.failed = str(exc)
        print(f"  route-change failed: {exc}", flush=True)
    return result


def _table_for_version(version, initial, changes: list[dict],
                       tables: list[tuple[str, dict]]) -> tuple[str, dict | None]:
    """(label, table) of a route version: the initial one, or the one a PUT returned."""
    if version == initial:
        return tables[0]
    for k, change in enumerate(changes, start=1):
        if change.get("version") == version:
            return tables[k]
    return "?", None


def _fixed_rate_with_changes(url: str, auth: dict, body: bytes, schedule: list[tuple[str, dict]], args,
                             result: RouteChangeResult, initial) -> None:
    import asyncio

    start = threading.Event()
    stop = threading.Event()
    clock = {"t0": 0.0}

    def change_routes() -> None:
        if not start.wait(30):
            return
        for k, (label, table) in enumerate(schedule, start=1):
            if stop.wait(max(0.0, clock["t0"] + k * args.route_interval - time.monotonic())):
                return
            sent = time.monotonic()
            document = json.dumps({"document": table, "comment": f"serving benchmark: {label}"}).encode()
            try:
                status, answer = _post(f"{url}/admin/routes", document, auth, method="PUT", timeout=30)
            except OSError as exc:
                status, answer = 0, str(exc).encode()
            done = time.monotonic()
            try:
                version = json.loads(answer).get("version")
            except (ValueError, AttributeError):
                version = None
            result.changes.append({"t": sent - clock["t0"], "label": label, "status": status, "version": version,
                                   "seconds": done - sent, "answer": answer[:300].decode(errors="replace")})

    changer = threading.Thread(target=change_routes, name="route-changer", daemon=True)
    changer.start()
    try:
        observations = asyncio.run(_fixed_rate(url, body, args, result, start, clock))
    finally:
        stop.set()
        changer.join(35)
    result.progression, result.late_old = version_progression(observations)
    if initial is not None and result.progression and result.progression[0]["version"] != initial:
        result.progression[0]["note"] = f"first version seen is not the initial v{initial}"


async def _fixed_rate(url: str, body: bytes, args, result: RouteChangeResult, start: threading.Event,
                      clock: dict) -> list[tuple[float, object, object]]:
    """Open loop: request k is due at t0 + k / rate, sent then whatever happened to the earlier ones."""
    import asyncio

    import aiohttp
    import orjson

    total = int(args.route_rate * args.route_duration)
    result.scheduled = total
    latencies: list[float] = []
    observations: list[tuple[float, object, object]] = []
    in_flight: set[asyncio.Task] = set()
    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit=args.route_max_in_flight)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(due: float) -> None:
            try:
                async with session.post(f"{url}/invocations", data=body, headers=headers) as response:
                    payload = await response.read()
                    status = response.status
            except TimeoutError:
                result.timeouts += 1
                return
            except aiohttp.ClientError:
                result.connection_errors += 1
                return
            done = time.monotonic()
            latencies.append(done - due)
            if 200 <= status < 300:
                result.ok += 1
                try:
                    answer = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    answer = {}
                observations.append((done - clock["t0"], answer.get("route_version"), answer.get("variant")))
            else:
                result.statuses[status] = result.statuses.get(status, 0) + 1

        clock["t0"] = t0 = time.monotonic()
        start.set()
        for k in range(total):
            due = t0 + k / args.route_rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= args.route_max_in_flight:
                result.not_sent += 1
                continue
            task = asyncio.create_task(one(due))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            result.sent += 1
        if in_flight:
            await asyncio.gather(*in_flight)
    result.latency = percentiles(latencies)
    return observations


# ------------------------------------------------------------------------------ report
def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f}"


def _cores(cpu: dict[str, float], key: str) -> str:
    return f"{cpu[key]:.2f}" if key in cpu else "n/a"


def _per_request(result: ServerResult) -> str:
    if "server" not in result.cpu or not result.wrk or not result.wrk.rps:
        return "n/a"
    return f"{result.cpu['server'] / result.wrk.rps * 1e6:,.0f}"


def _print(results: dict[str, ServerResult], route: RouteChangeResult | None, ratios: list[dict],
           args: argparse.Namespace) -> None:
    header = (f"{'server':<18} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'requests':>10} "
              f"{'non-2xx':>8} {'sock err':>8}  {'cores: server':>13} {'wrk':>5} {'other':>5} {'server µs/req':>13}")
    print("\n" + header + "\n" + "-" * len(header))
    for name, r in results.items():
        if r.failed or r.wrk is None:
            print(f"{name:<18} {'failed' if r.failed else 'not run':>9}")
            continue
        w = r.wrk
        print(f"{name:<18} {w.rps:>9,.0f} {_ms(w.latency.get('50')):>8} {_ms(w.latency.get('90')):>8} "
              f"{_ms(w.latency.get('99')):>8} {w.requests:>10,} {w.non_2xx:>8,} {w.errors:>8,}  "
              f"{_cores(r.cpu, 'server'):>13} {_cores(r.cpu, 'load'):>5} {_cores(r.cpu, 'other'):>5} "
              f"{_per_request(r):>13}")
    print("cores: CPU used during the measured run by the server's processes, by wrk, and by everything "
          "else on the machine (above ~0.1, other work skewed the figures); server µs/req: server CPU "
          "per answered request.")
    busy = [name for name, r in results.items() if r.cpu.get("other", 0) > 0.25]
    if busy:
        print(f"warning: other processes used more than a quarter of a core during: {', '.join(busy)}")
    if route is not None:
        _print_route(route)
    print()
    for r in ratios:
        if r["value"] is None:
            value = "n/a"
        elif r["name"].startswith("route_"):
            value = f"{r['value']:,}"
        else:
            value = f"{r['value']:.2f}x" if r["name"] != "p99_vs_mlflow" else f"{r['value']:.3f}"
        verdict_text = "" if r["pass"] is None else ("PASS" if r["pass"] else "MISS")
        print(f"{RATIO_LABELS[r['name']]:<38} {value:>9}  target {r['target']:<7} {verdict_text}"
              f"{'  (' + r['note'] + ')' if r['note'] else ''}")
    ceiling, mlflow = results.get("ceiling"), results.get("mlflow")
    if ceiling and mlflow and ceiling.wrk and mlflow.wrk and not ceiling.failed and not mlflow.failed:
        rps = _div(ceiling.wrk.rps, mlflow.wrk.rps)
        p99 = _div(ceiling.wrk.latency.get("99"), mlflow.wrk.latency.get("99"))
        print(f"for scale (no target): ceiling req/s / mlflow req/s {rps:.2f}x, ceiling p99 / mlflow p99 "
              f"{'n/a' if p99 is None else f'{p99:.3f}'}: the most a server could reach on this machine and model")
    flightdeck = results.get("flightdeck")
    for name, what in (("asgi", "framework-free ASGI handler"), ("ceiling-granian", "ceiling under granian")):
        other = results.get(name)
        if other and flightdeck and other.wrk and flightdeck.wrk and not other.failed and not flightdeck.failed:
            print(f"for scale (no target): flightdeck req/s / {what} req/s "
                  f"{_div(flightdeck.wrk.rps, other.wrk.rps):.2f}x")
    for name, r in results.items():
        if r.failed:
            print(f"\n{name} failed: {r.failed}")
        for note in r.notes:
            print(f"\nnote ({name}): {note}")


def _print_route(route: RouteChangeResult) -> None:
    print(f"\nroute-change run: {route.rate:g} req/s open loop for {route.seconds:g} s")
    if route.failed:
        print(f"  failed: {route.failed}")
        return
    statuses = ", ".join(f"{s}: {n}" for s, n in sorted(route.statuses.items())) or "none"
    print(f"  scheduled {route.scheduled:,}, sent {route.sent:,}, 2xx {route.ok:,}, non-2xx {route.non_2xx:,} "
          f"({statuses}), 5xx {route.five_xx:,}, connection errors {route.connection_errors:,}, "
          f"timeouts {route.timeouts:,}, not sent (client bound full) {route.not_sent:,}; dropped {route.dropped:,}")
    lat = route.latency
    if route.cpu:
        print(f"  cores used: gateway {route.cpu['server']:.2f}, this client {route.cpu['load']:.2f}, "
              f"other processes {route.cpu['other']:.2f}")
    print(f"  latency from the scheduled send time: p50 {_ms(lat.get('50'))} ms, p90 {_ms(lat.get('90'))} ms, "
          f"p99 {_ms(lat.get('99'))} ms, p99.9 {_ms(lat.get('99.9'))} ms")
    for c in route.changes:
        print(f"  t={c['t']:5.1f} s  PUT /admin/routes ({c['label']}) -> HTTP {c['status']}, "
              f"version {c['version']}, {c['seconds'] * 1000:.0f} ms"
              + ("" if 200 <= c["status"] < 300 else f": {c['answer']}"))
    print("  route versions seen in answers (t = seconds since the load started):")
    for entry in route.progression:
        total = entry["count"]
        expected = entry.get("expected") or {}
        shares = ", ".join(f"{v} {n / total:.1%}" + (f" (expected {expected.get(v, 0):.0%})" if expected else "")
                           for v, n in sorted(entry["variants"].items(), key=str))
        change = next((c for c in route.changes if c["version"] == entry["version"]), None)
        lag = f", first seen {entry['first'] - change['t']:.2f} s after its PUT" if change else ""
        print(f"    v{entry['version']} ({entry.get('table', '?')}): {total:,} answers, "
              f"t {entry['first']:.1f}-{entry['last']:.1f} s{lag}; variants {shares}"
              + (f"; {entry['note']}" if entry.get("note") else ""))
    for late in route.late_old:
        print(f"    {late['count']:,} answer(s) still from v{late['version']} after v{late['newest']} was seen "
              f"(last at t={late['last']:.1f} s): workers switch tables independently")
    if route.final_version is not None:
        print(f"  route table version at the end (GET /admin/routes): {route.final_version}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        _stop_all()
        print(f"\ninterrupted; stray processes: {', '.join(_stray_processes()) or 'none'}", file=sys.stderr)
        sys.exit(130)
