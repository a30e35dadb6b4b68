"""`flightdeck stream` (the stream scorer) and `flightdeck stream-produce` (events from generated data)."""

from __future__ import annotations

import argparse
import logging


def _options(args: argparse.Namespace):
    from pathlib import Path

    from flightdeck.config import get_settings
    from flightdeck.streaming.scorer import ScorerConfig
    from flightdeck.streaming.service import StreamOptions

    settings = get_settings()
    if args.broker == "kinesis" and args.sink != "broker":
        from flightdeck.errors import ConfigError

        raise ConfigError("--sink", args.sink, "drop it: the Kinesis scorer commits to its DynamoDB table")
    return StreamOptions(
        broker=args.broker, redis_url=args.redis_url or settings.stream_redis_url, kafka_bootstrap=args.kafka_bootstrap,
        input=args.input, output=args.output, dead_letter=args.dead_letter or "flightdeck:dead-letters",
        alerts=(settings.stream_alerts if args.alerts is None else args.alerts) or None,
        sink=args.sink, database_url=args.database_url, consumer=args.consumer,
        **({"instance_id": args.instance_id} if args.instance_id else {}),
        model_file=Path(args.model_file) if args.model_file else None, model_version=args.model_version,
        reference_profile=Path(args.reference_profile) if args.reference_profile else None,
        routes_file=Path(args.routes_file) if args.routes_file else settings.routes_file, endpoint=args.endpoint,
        poll_seconds=args.poll_seconds, allowed_lateness_s=args.allowed_lateness,
        max_future_skew_s=args.max_future_skew if args.max_future_skew >= 0 else None,
        config=ScorerConfig(batch_size=args.batch_size, threshold=settings.decision_threshold))


def _stream(args: argparse.Namespace) -> None:
    from prometheus_client import start_http_server

    from flightdeck.streaming.service import build_scorer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    scorer = _kinesis_scorer(args) if args.broker == "kinesis" else build_scorer(_options(args))
    scorer.install_signal_handlers()
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_host, registry=scorer.metrics.registry)
    stats = scorer.run(max_records=args.max_records, idle_stop_s=args.idle_stop)
    print(f"stream scorer stopped: {stats.records} records, {stats.scored} scored, "
          f"{stats.dead_letters} dead-lettered, {stats.batches} batches")


def _kinesis_scorer(args: argparse.Namespace):
    """A scorer reading a Kinesis stream and committing to DynamoDB (flightdeck.streaming.kinesis)."""
    from flightdeck.streaming.kinesis import KinesisBackend, clients
    from flightdeck.streaming.scorer import StreamScorer
    from flightdeck.streaming.service import default_windows, model_router

    o = _options(args)
    kinesis, dynamodb = clients(args.aws_region, args.aws_endpoint_url)
    # --alerts / --dead-letter name Kinesis streams here; without them alerts and dead letters stay
    # in the DynamoDB table only (the Redis defaults are not Kinesis names).
    backend = KinesisBackend(kinesis, dynamodb, o.input, args.dynamodb_table, o.consumer, o.instance_id,
                             alert_stream=args.alerts or None, dead_letter_stream=args.dead_letter or None,
                             lease_s=args.lease_seconds, max_batch=min(o.config.batch_size, 1000),
                             entity_buckets=args.entity_buckets)
    return StreamScorer(backend, model_router(o), default_windows(o), o.config)


def _produce(args: argparse.Namespace) -> None:
    if args.broker == "kinesis":
        from flightdeck.streaming.kinesis import clients, publish
        from flightdeck.streaming.producer import generated_events

        kinesis, _ = clients(args.aws_region, args.aws_endpoint_url)
        n = publish(kinesis, args.input, generated_events(args.events, args.seed))
        print(f"produced {n} events to {args.input}")
        return
    from flightdeck.streaming.producer import produce_generated

    n = produce_generated(args.redis_url or None, args.input, args.events, args.seed, args.rate)
    print(f"produced {n} events to {args.input}")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", help="Redis URL (default: the settings' stream_redis_url)")
    parser.add_argument("--input", default="flightdeck:events", help="input stream / topic / Kinesis stream")
    parser.add_argument("--aws-region", help="Kinesis and DynamoDB region (default: the AWS configuration's)")
    parser.add_argument("--aws-endpoint-url", help="Kinesis and DynamoDB endpoint (default: AWS_ENDPOINT_URL, else AWS)")


def register(commands) -> None:
    """Add `stream` and `stream-produce` to the `flightdeck` sub-commands."""
    stream = commands.add_parser(
        "stream", help="run the stream scorer (Redis Streams or Kafka in; broker or PostgreSQL out)",
        description="Consume feature events, score them with the registered ONNX model (route table / "
                    "champion, polled), write one result per event exactly once, with windows, "
                    "dead letters and Prometheus metrics. SIGTERM finishes the batch and stops.")
    _common(stream)
    stream.add_argument("--broker", choices=("redis", "kafka", "kinesis"), default="redis")
    stream.add_argument("--kafka-bootstrap", help="Kafka bootstrap servers (host:port)")
    stream.add_argument("--output", default="flightdeck:scores", help="output stream / topic (sink broker)")
    stream.add_argument("--dead-letter", help="dead-letter stream / topic (default flightdeck:dead-letters; Kinesis: "
                                              "a stream dead letters are also forwarded to, default none)")
    stream.add_argument("--alerts", help="drift-alert stream / topic (default: the settings' stream_alerts; '' = none; "
                                         "Kinesis: default none)")
    stream.add_argument("--dynamodb-table", default="flightdeck-stream",
                        help="Kinesis: the DynamoDB table of leases, checkpoints, results and state (created if absent)")
    stream.add_argument("--lease-seconds", type=float, default=30.0,
                        help="Kinesis: how long a shard lease lasts unless renewed")
    stream.add_argument("--entity-buckets", type=int, default=16, help="Kinesis: DynamoDB items entity state is spread over")
    stream.add_argument("--sink", choices=("broker", "sql"), default="broker")
    stream.add_argument("--database-url", help="SQL sink database (PostgreSQL)")
    stream.add_argument("--consumer", default="stream-scorer", help="this scorer's name (state and offsets)")
    stream.add_argument("--instance-id", help="this instance among the consumer's (Kafka transactional id; "
                                              "default: the host name)")
    stream.add_argument("--model-file", help="score with this ONNX file instead of the registry")
    stream.add_argument("--model-version", default="file", help="version label for --model-file")
    stream.add_argument("--reference-profile", help="--model-file's training reference profile (JSON, as "
                                                    "train_register logs it): per-feature drift in the windows")
    stream.add_argument("--routes-file", help="route table YAML (default: settings, else champion)")
    stream.add_argument("--endpoint", help="route-table endpoint (default: the table's default)")
    stream.add_argument("--poll-seconds", type=float, default=30.0, help="how often routes/aliases are re-read")
    stream.add_argument("--allowed-lateness", type=float, default=10.0, help="watermark delay, seconds")
    stream.add_argument("--max-future-skew", type=float, default=300.0,
                        help="event times further ahead of arrival are clamped for the windows, seconds (-1: off)")
    stream.add_argument("--batch-size", type=int, default=500)
    stream.add_argument("--metrics-port", type=int, default=0, help="serve /metrics on METRICS_HOST:PORT")
    stream.add_argument("--metrics-host", default="127.0.0.1",
                        help="address /metrics listens on (0.0.0.0 in a container that Prometheus scrapes)")
    stream.add_argument("--max-records", type=int, help="stop after this many records")
    stream.add_argument("--idle-stop", type=float, help="stop after this many idle seconds")
    stream.set_defaults(func=_stream)
    produce = commands.add_parser("stream-produce", help="publish generated feature events to a Redis or Kinesis stream")
    _common(produce)
    produce.add_argument("--broker", choices=("redis", "kinesis"), default="redis")
    produce.add_argument("--events", type=int, default=10_000)
    produce.add_argument("--seed", type=int, default=7)
    produce.add_argument("--rate", type=float, default=0.0, help="events per second (0 = as fast as possible)")
    produce.set_defaults(func=_produce)
