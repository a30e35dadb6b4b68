"""The Params of a serverless_package run."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from flightdeck.config import MODEL_REF_PATTERN, NAME_PATTERN, get_settings
from flightdeck.params import RunParams


class ServerlessPackageParams(RunParams):
    """The version to ship to Lambda, the function and alias, its limits and alarms."""

    what: ClassVar[str] = "serverless packaging parameters"

    model_name: str = Field(default_factory=lambda: get_settings().model_name, pattern=NAME_PATTERN,
                            description="Registered model.")
    model_ref: str = Field("champion", pattern=MODEL_REF_PATTERN, description="Version number or alias to package.")
    function_name: str = Field("flightdeck-scorer", min_length=1)
    alias: str = Field("live", pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    role_arn: str | None = Field(None, description=(
        "Execution role, needed only to create the function; one the release policy allows."))
    canary_percent: float | None = Field(None, gt=0, lt=100, description=(
        "Leave the alias on the old version and send this % to the new one."))
    memory_mb: int = Field(128, ge=128, le=10240)
    timeout_seconds: int = Field(10, ge=1, le=900)
    max_p99_ms: float = Field(1000, gt=0, description="Duration alarm threshold.")
    alarm_actions: list[str] = Field(default_factory=list, description="SNS topic ARNs.")
    max_zipped_bytes: int | None = Field(None, ge=1, description="Lower the 50 MB zipped limit (tests, drills).")
    aws_conn_id: str = "aws_default"
    region: str | None = None

    @model_validator(mode="after")
    def _role_allowed(self) -> ServerlessPackageParams:
        """A role the release policy does not list is refused (PolicyFloorError), not deployed."""
        from flightdeck.delivery.policy import check_role_arn

        check_role_arn(self.role_arn)
        return self
