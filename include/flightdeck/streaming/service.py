"""Build a stream scorer from settings-like options (what `flightdeck stream` runs)."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from pathlib import Path

from flightdeck.errors import ConfigError
from flightdeck.streaming.broker import Backend
from flightdeck.streaming.models import ModelRouter, StaticModel
from flightdeck.streaming.scorer import ScorerConfig, StreamScorer
from flightdeck.streaming.windows import Windows


@dataclass(frozen=True)
class StreamOptions:
    """Where to read, where to write, which model, and the window definitions."""

    broker: str = "redis"  # redis | kafka
    redis_url: str = "redis://127.0.0.1:6379/0"  # the stream Redis (settings.stream_redis_url), not the cache's
    kafka_bootstrap: str | None = None
    input: str = "flightdeck:events"
    output: str = "flightdeck:scores"
    dead_letter: str = "flightdeck:dead-letters"
    alerts: str | None = "flightdeck:alerts"
    sink: str = "broker"  # broker | sql
    database_url: str | None = None
    consumer: str = "stream-scorer"
    # This process among the consumer's instances (Kafka: its transactional id, so instances do not
    # fence each other, while a restarted instance fences its own zombie). Default: the host name.
    instance_id: str = field(default_factory=socket.gethostname)
    model_file: Path | None = None
    model_version: str = "file"
    reference_profile: Path | None = None  # --model-file's training reference profile (JSON): per-feature drift
    routes_file: Path | None = None
    endpoint: str | None = None
    poll_seconds: float = 30.0
    tumbling_s: float = 60.0
    sliding_s: float = 300.0
    slide_s: float = 60.0
    allowed_lateness_s: float = 10.0
    max_future_skew_s: float | None = 300.0  # event times further ahead of arrival are clamped
    config: ScorerConfig = ScorerConfig()


def default_windows(o: StreamOptions) -> list[Windows]:
    return [Windows("tumbling", o.tumbling_s, None, o.allowed_lateness_s, max_future_skew_s=o.max_future_skew_s),
            Windows("sliding", o.sliding_s, o.slide_s, o.allowed_lateness_s, max_future_skew_s=o.max_future_skew_s)]


def model_router(o: StreamOptions) -> ModelRouter:
    from flightdeck.config import get_settings

    settings = get_settings()
    if o.model_file is not None:
        try:
            onnx_bytes = Path(o.model_file).read_bytes()
        except OSError as exc:
            raise ConfigError("--model-file", f"cannot read {o.model_file} ({exc})", "pass an ONNX file") from None
        registry = StaticModel(onnx_bytes, o.model_version, profile=_profile_file(o.reference_profile))
        return ModelRouter(registry, settings.model_name, poll_seconds=o.poll_seconds)
    if o.reference_profile is not None:
        raise ConfigError("--reference-profile", f"{o.reference_profile} given without --model-file",
                          "drop it: a registered version's own profile is read from the registry")
    from flightdeck.registry import Registry
    from flightdeck.serving.routes import default_route_table, load_route_file

    routes = (lambda: load_route_file(o.routes_file)) if o.routes_file else default_route_table
    return ModelRouter(Registry.from_settings(settings), settings.model_name, routes, o.endpoint, o.poll_seconds)


def _profile_file(path: Path | None) -> dict | None:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError("--reference-profile", f"cannot read {path} as JSON ({exc})",
                          "pass the reference_profile.json of the model's training run") from None


def backend(o: StreamOptions):
    """The source and sink the options name."""
    if o.sink == "sql":
        from flightdeck.streaming.sql import SqlSink, create_tables

        if not o.database_url:
            raise ConfigError("--database-url", "the SQL sink needs a database", "pass a PostgreSQL URL")
        create_tables(o.database_url)
        sink = SqlSink(o.database_url, o.consumer)
    elif o.sink != "broker":
        raise ConfigError("--sink", f"unknown sink {o.sink!r}", "use broker or sql")
    if o.broker == "redis":
        from flightdeck.streaming.redis_streams import RedisSink, RedisStreamSource, connect

        client = connect(o.redis_url)
        if o.sink == "broker":
            sink = RedisSink(client, o.output, o.dead_letter, f"flightdeck:stream:{o.consumer}", o.alerts)
        return Backend(RedisStreamSource(client, o.input), sink)
    if o.broker == "kafka":
        if not o.kafka_bootstrap:
            raise ConfigError("--kafka-bootstrap", "no Kafka bootstrap servers", "pass host:port")
        from flightdeck.streaming.kafka import KafkaSource, KafkaTransactionalBackend

        if o.sink == "sql":
            return Backend(KafkaSource(o.kafka_bootstrap, o.input), sink)
        return KafkaTransactionalBackend(o.kafka_bootstrap, o.input, o.output, o.dead_letter,
                                         f"{o.input}.scorer-state", o.consumer, f"flightdeck-{o.consumer}-{o.instance_id}",
                                         o.alerts)
    raise ConfigError("--broker", f"unknown broker {o.broker!r}", "use redis or kafka")


def build_scorer(o: StreamOptions, metrics=None) -> StreamScorer:
    """A ready scorer (call `.run()`)."""
    return StreamScorer(backend(o), model_router(o), default_windows(o), o.config, metrics)
