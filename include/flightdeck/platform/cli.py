"""`flightdeck capacity` and `flightdeck airflow-run`.

`register(commands)` adds them to flightdeck's sub-parsers; handlers import their parts lazily.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flightdeck.errors import FlightdeckError

# The committed serving benchmark (benchmarks/serving.py's --json output) in a checkout.
DEFAULT_BENCHMARK = Path(__file__).resolve().parents[3] / "docs" / "data" / "benchmarks" / "serving.json"


def register(commands: argparse._SubParsersAction) -> None:
    capacity = commands.add_parser(
        "capacity", help="gateway replicas (and HPA / ECS target-tracking settings) for a rate and a p99 target, "
                         "from an M/M/c queue and the serving benchmark's service time")
    capacity.add_argument("--rate", type=float, required=True, help="requests per second to serve")
    capacity.add_argument("--p99-ms", type=float, required=True, help="target p99 of the response time (ms)")
    capacity.add_argument("--service-ms", type=float,
                          help="mean service time per request per worker (ms); default: from --benchmark")
    capacity.add_argument("--benchmark", type=Path, default=DEFAULT_BENCHMARK,
                          help="serving benchmark report (JSON) to read the service time from")
    capacity.add_argument("--workers-per-replica", type=int, default=2, help="uvicorn workers in one replica")
    capacity.add_argument("--headroom", type=float, default=0.25,
                          help="spare capacity: size for rate × (1 + headroom) (default 0.25)")
    capacity.set_defaults(func=_capacity)

    run = commands.add_parser(
        "airflow-run", help="trigger a DAG run through Airflow's REST API and (with --wait) report its outcome")
    run.add_argument("dag_id")
    run.add_argument("--conf", default="{}", help="the run's conf, a JSON object")
    run.add_argument("--wait", action="store_true", help="wait for the run to finish; exit 1 unless it succeeded")
    run.add_argument("--url", default=None, help="Airflow's base URL (default $AIRFLOW_URL or http://127.0.0.1:8080)")
    run.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait at most")
    run.add_argument("--poll-seconds", type=float, default=10.0)
    run.set_defaults(func=_airflow_run)

    balanced = commands.add_parser(
        "serve-balanced", help="N `flightdeck serve` instances behind nginx (passive health checks, retries)")
    balanced.add_argument("--instances", type=int, default=2)
    balanced.add_argument("--port", type=int, default=8000, help="nginx's port")
    balanced.add_argument("--first-port", type=int, default=8101, help="the first instance's port (then +1, +2…)")
    balanced.add_argument("--workers", type=int, default=1, help="uvicorn workers per instance")
    balanced.add_argument("--routes", help="route table file for every instance")
    balanced.set_defaults(func=_serve_balanced)


def _capacity(args: argparse.Namespace) -> None:
    from flightdeck.platform import capacity

    if args.service_ms is not None:
        service_ms, source = args.service_ms, f"--service-ms {args.service_ms:g}"
    else:
        if not args.benchmark.is_file():
            raise FlightdeckError(f"no serving benchmark report at {args.benchmark}: pass --service-ms, or "
                                  "--benchmark with a report of benchmarks/serving.py --json")
        try:
            report = json.loads(args.benchmark.read_text())
        except ValueError as exc:
            raise FlightdeckError(f"{args.benchmark} is not JSON ({exc}); pass --service-ms") from exc
        service_ms, source = capacity.service_time_from_benchmark(report)
    result = capacity.plan(args.rate, args.p99_ms, service_ms, args.workers_per_replica, args.headroom)
    print(f"service time: {source}")
    print(result.explain())
    print("(one M/M/c pool over every worker: a balancer that spreads requests unevenly needs more)")


def _airflow_run(args: argparse.Namespace) -> int:
    from flightdeck.platform import airflow_run

    return airflow_run.main(args)


def _serve_balanced(args: argparse.Namespace) -> None:
    from flightdeck.config import get_settings
    from flightdeck.platform import balancer

    prefix = Path(get_settings().home) / "nginx"
    balancer.serve_balanced(args.instances, args.port, args.first_port, args.workers, args.routes, prefix)
