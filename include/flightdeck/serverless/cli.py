"""`flightdeck cost`: Lambda, Cloud Functions, Azure Functions and an always-on container, from
a measured latency."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

# Flags that override one price of the price file: (flag, Prices field, scale from the flag's unit).
PRICE_FLAGS = (("gb_second_price", "lambda_gb_second", 1.0), ("request_price", "lambda_request", 1e-6),
               ("http_api_price", "http_api_request", 1e-6), ("vcpu_hour_price", "container_vcpu_hour", 1.0),
               ("gb_hour_price", "container_gb_hour", 1.0), ("load_balancer_hour_price", "load_balancer_hour", 1.0))


def _cost(args: argparse.Namespace) -> None:
    from flightdeck.errors import ConfigError
    from flightdeck.serverless.cost import (
        PRICE_FILE,
        Prices,
        Workload,
        break_evens,
        cost_table,
        format_table,
        plot,
        text_chart,
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
    price_file = args.prices or PRICE_FILE
    prices = Prices.from_file(price_file)
    overrides = {name: getattr(args, flag) * scale for flag, name, scale in PRICE_FLAGS
                 if getattr(args, flag) is not None}
    prices = dataclasses.replace(prices, **overrides)
    rows = cost_table(work, prices)
    evens = break_evens(work, prices)
    print(format_table(rows, evens, work, price_file))
    if overrides:
        print(f"overridden on the command line: {', '.join(sorted(overrides))}")
    print()
    print(text_chart(work, prices))
    for chart in (args.png, args.svg):
        if chart:
            print(f"chart: {plot(rows, evens, chart, work, prices)}")


def register(commands) -> None:
    """Add `cost` to the `flightdeck` sub-commands."""
    cost = commands.add_parser("cost", help="serverless (Lambda, Cloud Functions, Azure) vs always-on container cost",
                               description="Monthly cost of AWS Lambda, Google Cloud Functions and Azure Functions "
                                           "(per request and billed duration) against always-on containers at "
                                           "0.1-1,000 requests/s, with each break-even, a text chart and a PNG or "
                                           "SVG chart. Prices: flightdeck/serverless/prices.yaml (each with its "
                                           "source URL and date) or --prices.")
    cost.add_argument("--latency-ms", type=float, help="billed duration per request")
    cost.add_argument("--verify-report", help="verify.json of serverless_package: its warm_mean_ms")
    cost.add_argument("--memory-mb", type=int, default=128, help="Lambda memory")
    cost.add_argument("--container-vcpu", type=float, default=0.25)
    cost.add_argument("--container-memory-gb", type=float, default=0.5)
    cost.add_argument("--min-replicas", type=int, default=2)
    cost.add_argument("--prices", help="a YAML price file shaped like prices.yaml (default: the packaged one)")
    cost.add_argument("--gb-second-price", type=float, help="Lambda USD per GB-second (overrides the file)")
    cost.add_argument("--request-price", type=float, help="Lambda USD per million requests")
    cost.add_argument("--http-api-price", type=float, help="HTTP API USD per million requests")
    cost.add_argument("--vcpu-hour-price", type=float, help="container USD per vCPU-hour")
    cost.add_argument("--gb-hour-price", type=float, help="container USD per GB-hour")
    cost.add_argument("--load-balancer-hour-price", type=float, help="load balancer USD per hour")
    cost.add_argument("--png", default="serverless-cost.png", help="where to write the PNG chart ('' for none)")
    cost.add_argument("--svg", help="also write the chart as an SVG here")
    cost.set_defaults(func=_cost)
