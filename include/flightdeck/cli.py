"""`flightdeck …`: the command line. Each command is a thin shell over a domain function."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from flightdeck.delivery.cli import register as delivery_commands
from flightdeck.edge.cli import register as edge_commands
from flightdeck.errors import FlightdeckError
from flightdeck.guide.cli import register as guide_commands
from flightdeck.platform.cli import register as platform_commands
from flightdeck.serverless.cli import register as serverless_commands
from flightdeck.streaming.cli import register as streaming_commands


def _generate(args: argparse.Namespace, settings=None) -> None:
    from flightdeck.config import get_settings
    from flightdeck.data.generator import write_partitions

    settings = settings or get_settings()
    paths = write_partitions(settings.raw_dir, args.start, args.end, scenario=args.scenario,
                             rows_per_day=args.rows_per_day or settings.rows_per_day,
                             seed=settings.seed if args.seed is None else args.seed,
                             corrupt_fraction=args.corrupt_fraction)
    print(f"wrote {len(paths)} {args.scenario} partition(s) under {settings.raw_dir}")


def _train(args: argparse.Namespace) -> None:
    from flightdeck.training.params import TrainParams
    from flightdeck.training.pipeline import run_all

    params = TrainParams.parse({"window_start": args.window_start, "window_end": args.window_end,
                                "labels_as_of": args.labels_as_of, "model_type": args.model_type,
                                "margin": args.margin, "model_name": args.model_name})
    print(json.dumps(run_all(params), indent=2, default=str))


def _summary(args: argparse.Namespace) -> None:
    from flightdeck.config import get_settings
    from flightdeck.registry import Registry

    settings = get_settings()
    registry = Registry.from_settings(settings)
    name = args.model_name or settings.model_name
    versions = sorted(registry.client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
    print(f"MLflow tracking URI : {settings.tracking_uri}")
    print(f"Browse it with      : mlflow ui --backend-store-uri {settings.tracking_uri} --port 5000")
    print(f"Registered model    : {name} ({len(versions)} version(s))")
    by_version: dict[str, list[str]] = {}
    for alias, version in registry.aliases(name).items():
        by_version.setdefault(version, []).append(alias)
    for version in versions:
        run = registry.client.get_run(version.run_id)
        auc = run.data.metrics.get("holdout_roc_auc", float("nan"))
        parity = run.data.metrics.get("onnx_parity_max_abs_diff", float("nan"))
        aliases = ", ".join(sorted(by_version.get(str(version.version), []))) or "-"
        print(f"  v{version.version}: aliases [{aliases}]  holdout AUC {auc:.4f}  "
              f"ONNX parity {parity:.1e}  MLflow run {version.run_id}")
    runs = registry.client.search_runs([registry.experiment_id()], order_by=["attributes.start_time DESC"],
                                       max_results=1)
    if runs:
        print(f"Latest training run : {runs[0].info.run_id}: {runs[0].data.tags.get('flightdeck.decision', '')}")
    print(f"Aliases             : {registry.aliases(name) or 'none'}")
    _summarise_batch(settings, registry)


def _summarise_batch(settings, registry) -> None:
    from flightdeck.data.partitions import list_partitions

    days = list_partitions(settings.predictions_dir)
    if not days:
        return
    print(f"Predictions         : {settings.predictions_dir} ({len(days)} day(s), {days[0]} .. {days[-1]})")
    experiment = registry.client.get_experiment_by_name(settings.experiment_name + "-batch")
    runs = registry.client.search_runs([experiment.experiment_id], order_by=["params.ds ASC"]) if experiment else []
    for run in runs:
        ds = run.data.params.get("ds")
        drifted = int(run.data.metrics.get("drifted_features", 0))
        verdict = f"{drifted} drifted feature(s)" if drifted else "no drift"
        print(f"  ds={ds}: {int(run.data.metrics.get('rows', 0))} rows, {verdict}, "
              f"report {settings.reports_dir / f'ds={ds}' / 'index.html'}")


def _serve(args: argparse.Namespace) -> None:
    import logging

    from flightdeck.config import get_settings
    from flightdeck.serving.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    serve(get_settings(), gateway_host=args.host, gateway_port=args.port, gateway_workers=args.workers,
          grpc_port=args.grpc_port, routes_file=args.routes)


def _gateway_migrate(args: argparse.Namespace) -> None:
    from sqlalchemy.engine import make_url

    from flightdeck.config import get_settings
    from flightdeck.serving import db

    settings = get_settings()
    db.upgrade(settings.gateway_db_url)
    print(f"gateway schema is current in {make_url(settings.gateway_db_url).render_as_string(hide_password=True)}")


def _gateway_demo(args: argparse.Namespace) -> None:
    from flightdeck.config import get_settings
    from flightdeck.devtools.gateway_demo import run

    run(get_settings())


def _release_demo(args: argparse.Namespace) -> None:
    from flightdeck.config import get_settings
    from flightdeck.devtools.release_demo import run

    try:
        run(get_settings(), rate=args.rate)
    except KeyboardInterrupt:
        print("release demo interrupted: the load, Airflow and the gateway were stopped", file=sys.stderr)
        sys.exit(130)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flightdeck", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate-data", help="write synthetic raw partitions ds=YYYY-MM-DD")
    generate.add_argument("--start", type=date.fromisoformat, required=True)
    generate.add_argument("--end", type=date.fromisoformat, required=True)
    generate.add_argument("--scenario", default="clean")
    generate.add_argument("--rows-per-day", type=int)
    generate.add_argument("--seed", type=int)
    generate.add_argument("--corrupt-fraction", type=float, default=0.05,
                          help="share of damaged rows in the corrupt scenario")
    generate.set_defaults(func=_generate)

    train = commands.add_parser("train", help="run the train_register stages without Airflow")
    train.add_argument("--window-start", required=True)
    train.add_argument("--window-end", required=True)
    train.add_argument("--labels-as-of")
    train.add_argument("--model-type")
    train.add_argument("--margin", type=float)
    train.add_argument("--model-name")
    train.set_defaults(func=_train)

    serve = commands.add_parser("serve", help="run the real-time gateway (uvicorn workers; REST, WebSocket, gRPC)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--grpc-port", type=int, help="0 turns gRPC off")
    serve.add_argument("--routes", type=Path, help="route table seeded when the store has none")
    serve.set_defaults(func=_serve)

    migrate = commands.add_parser("gateway-migrate", help="create or upgrade the gateway's database schema")
    migrate.set_defaults(func=_gateway_migrate)

    demo = commands.add_parser("gateway-demo", help="start the gateway, call every protocol, stop it")
    demo.set_defaults(func=_gateway_demo)

    release_demo = commands.add_parser(
        "release-demo", help="canary-promote a second version under load with airflow standalone, approve it "
                             "through the REST API, then watch a broken challenger roll back")
    release_demo.add_argument("--rate", type=float, default=200.0, help="background requests per second")
    release_demo.set_defaults(func=_release_demo)

    summary = commands.add_parser("summary", help="print the MLflow store, versions and aliases")
    summary.add_argument("--model-name")
    summary.set_defaults(func=_summary)

    # Each deployment pattern registers its own commands; their handlers import lazily.
    for register in (delivery_commands, edge_commands, serverless_commands, streaming_commands, guide_commands,
                     platform_commands):
        register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except FlightdeckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
