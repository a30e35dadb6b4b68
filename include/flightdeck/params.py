"""The base of every run's Params model: strict, and `parse` names each bad Param and the fix.

The DAGs generate their Params from these models (`flightdeck.airflow.params`), and the task
that reads the Params validates them again with the same model.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from flightdeck.errors import ConfigError


class RunParams(BaseModel):
    """Unknown keys are rejected, not ignored; an empty value (None or "") means the default."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    what: ClassVar[str] = "parameters"  # how the error message names them, e.g. "training parameters"

    @classmethod
    def parse(cls, values: dict[str, Any]):
        """Validate a mapping (Airflow Params plus run conf, CLI options); ConfigError names each bad Param."""
        cleaned = {k: v for k, v in values.items() if v is not None and v != ""}
        try:
            return cls.model_validate(cleaned)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                name = ".".join(str(part) for part in error["loc"]) or "params"
                message = "unknown parameter" if error["type"] == "extra_forbidden" else error["msg"]
                problems.append((name, message))
            names = ", ".join(name for name, _ in problems)
            detail = "; ".join(f"{name}: {message}" for name, message in problems)
            raise ConfigError(names, f"invalid {cls.what} ({detail})",
                              "correct the named Param(s) in the trigger form or run conf; "
                              f"known Params are {', '.join(cls.model_fields)}") from None
