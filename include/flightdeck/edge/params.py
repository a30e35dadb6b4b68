"""The Params of an edge_export run."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from flightdeck.config import MODEL_REF_PATTERN, NAME_PATTERN, get_settings
from flightdeck.params import RunParams

PublishFormat = Literal["onnx_float", "onnx_int8", "tflite_float32", "tflite_float16", "tflite_int8"]


class EdgeExportParams(RunParams):
    """The version to export, the artifact the bundle ships, and where and to whom it goes."""

    what: ClassVar[str] = "edge export parameters"

    model_name: str = Field(default_factory=lambda: get_settings().model_name, pattern=NAME_PATTERN,
                            description="Registered model.")
    model_ref: str = Field("champion", pattern=MODEL_REF_PATTERN, description="Version number or alias to export.")
    publish_format: PublishFormat = Field("tflite_int8", description="Which artifact the bundle ships.")
    store: str | None = Field(None, description="Folder or s3://bucket/prefix; default $FLIGHTDECK_HOME/edge/store.")
    channel: str = Field("stable", pattern=NAME_PATTERN, description="Release channel the devices follow.")
    rollout_percent: float = Field(100.0, ge=0, le=100,
                                   description="Share of devices (by device-id hash) that take the bundle.")
