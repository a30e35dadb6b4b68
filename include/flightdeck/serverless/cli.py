"""`flightdeck cost`: Lambda against an always-on container, from a measured latency."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _cost(args: argparse.Namespace) -> None:
    from flightdeck.errors import ConfigError
    from flightdeck.serverless.cost import (
        Prices,
        Workload,
        break_even,
        cost_table,
        format_table,
        plot,
    )

    latency = args.latency_ms
    if args.verify_report:
        try:
            report = json.loads(Path(args.verify_report).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError("--verify-report", f"cannot read {args.verify_report} ({exc})",
                              "pass the verify.json the serverless_package DAG wrote") from None
        latency = latency or report.get("warm_mean_ms")
    if latency is None:
        raise ConfigError("--latency-ms", "no latency given", "pass --latency-ms, or --verify-report with "
                          "the serverless_package DAG's verify.json")
    work = Workload(latency_ms=float(latency), lambda_memory_mb=args.memory_mb, container_vcpu=args.container_vcpu,
                    container_memory_gb=args.container_memory_gb, min_replicas=args.min_replicas)
    prices = Prices(lambda_gb_second=args.gb_second_price, lambda_request=args.request_price / 1e6,
                    http_api_request=args.http_api_price / 1e6, container_vcpu_hour=args.vcpu_hour_price,
                    container_gb_hour=args.gb_hour_price, load_balancer_hour=args.load_balancer_hour_price)
    rows = cost_table(work, prices)
    even = break_even(work, prices)
    print(format_table(rows, even, work))
    print(f"chart: {plot(rows, even, args.png, work)}")


def register(commands) -> None:
    """Add `cost` to the `flightdeck` sub-commands."""
    from flightdeck.serverless.cost import Prices

    defaults = Prices()
    cost = commands.add_parser("cost", help="Lambda vs always-on container cost from the measured latency",
                               description="Monthly cost of Lambda (requests x billed duration x memory + "
                                           "per-request prices) against always-on containers at 0.1-1,000 "
                                           "requests/s, with the break-even. Default prices: AWS list "
                                           "prices, us-east-1 (see flightdeck.serverless.cost).")
    cost.add_argument("--latency-ms", type=float, help="billed duration per request")
    cost.add_argument("--verify-report", help="verify.json of serverless_package: its warm_mean_ms")
    cost.add_argument("--memory-mb", type=int, default=128)
    cost.add_argument("--container-vcpu", type=float, default=0.25)
    cost.add_argument("--container-memory-gb", type=float, default=0.5)
    cost.add_argument("--min-replicas", type=int, default=2)
    cost.add_argument("--gb-second-price", type=float, default=defaults.lambda_gb_second)
    cost.add_argument("--request-price", type=float, default=defaults.lambda_request * 1e6, help="USD per million")
    cost.add_argument("--http-api-price", type=float, default=defaults.http_api_request * 1e6,
                      help="USD per million")
    cost.add_argument("--vcpu-hour-price", type=float, default=defaults.container_vcpu_hour)
    cost.add_argument("--gb-hour-price", type=float, default=defaults.container_gb_hour)
    cost.add_argument("--load-balancer-hour-price", type=float, default=defaults.load_balancer_hour)
    cost.add_argument("--png", default="serverless-cost.png", help="where to write the chart")
    cost.set_defaults(func=_cost)
