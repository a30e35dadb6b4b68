"""The Params of the streaming DAGs: stream_replay and stream_drift_investigation."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from flightdeck.config import MODEL_REF_PATTERN, NAME_PATTERN, get_settings
from flightdeck.params import RunParams


class StreamReplayParams(RunParams):
    """A range of the scorer's input stream and the model to re-score it with."""

    what: ClassVar[str] = "stream replay parameters"

    broker: Literal["redis", "kinesis"] = Field("redis", description="Where the input stream lives.")
    stream: str = Field("flightdeck:events", min_length=1, description="The scorer's input stream.")
    start: str = Field("-", min_length=1, description="First entry id or epoch ms ('-' = oldest; Kinesis: ms only).")
    end: str = Field("+", min_length=1, description="Last entry id or epoch ms ('+' = newest; Kinesis: ms only).")
    redis_url: str | None = Field(None, description="Default: the configured redis_url.")
    aws_region: str | None = Field(None, description="Kinesis: the stream's region (default: the AWS configuration's).")
    model_name: str = Field(default_factory=lambda: get_settings().model_name, pattern=NAME_PATTERN,
                            description="Registered model to score with.")
    model_ref: str = Field("champion", pattern=MODEL_REF_PATTERN, description="Version number or alias.")


class DriftInvestigationParams(RunParams):
    """Where the scorer's alerts, results and window state live; optionally one alert to look at."""

    what: ClassVar[str] = "drift investigation parameters"

    broker: Literal["redis", "kinesis"] = Field(default_factory=lambda: get_settings().stream_broker,
                                                description="Where the scorer runs (default: the configured "
                                                            "stream_broker).")
    redis_url: str | None = Field(None, description="Default: the configured redis_url.")
    alert_stream: str = Field(default_factory=lambda: get_settings().stream_alerts, min_length=1,
                              description="The stream the scorer publishes drift alerts to.")
    alert_id: str | None = Field(None, description="Investigate this alert entry by hand (Kinesis: "
                                                   "<shard id>:<sequence number>).")
    output_stream: str = Field("flightdeck:scores", min_length=1, description="Redis: the scorer's --output.")
    state_prefix: str = Field("flightdeck:stream:stream-scorer", min_length=1,
                              description="Redis: flightdeck:stream:<the scorer's --consumer>.")
    dynamodb_table: str = Field("flightdeck-stream", min_length=3, description="Kinesis: the scorer's --dynamodb-table.")
    consumer: str = Field("stream-scorer", min_length=1, description="Kinesis: the scorer's --consumer.")
    aws_region: str | None = Field(None, description="Kinesis: the region (default: the AWS configuration's).")
