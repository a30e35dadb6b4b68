"""Errors a user can cause. Each names the input at fault and how to fix it.

Callers catch `FlightdeckError` to tell user mistakes apart from bugs; transports (CLI,
Airflow tasks, the gateway) map the subclasses to exit codes, task failures or 4xx.
"""

from __future__ import annotations


class FlightdeckError(Exception):
    """Base class for errors caused by input, configuration or data, not by a bug."""


class ConfigError(FlightdeckError):
    """A setting or parameter is missing or malformed."""

    def __init__(self, name: str, problem: str, fix: str) -> None:
        self.name = name
        self.problem = problem
        self.fix = fix
        super().__init__(f"{name}: {problem}. Fix: {fix}")


class MissingPartitionError(FlightdeckError):
    """A `ds=YYYY-MM-DD` partition that a job needs does not exist."""

    def __init__(self, root: str, missing: list[str]) -> None:
        self.root = root
        self.missing = missing
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        super().__init__(
            f"{len(missing)} partition(s) missing under {root}: {shown}. "
            "Fix: generate them (`flightdeck generate-data --start … --end …`) "
            "or choose a window that has data."
        )


class DataValidationError(FlightdeckError):
    """Data broke its expectation suite. Carries the report that names each failure."""

    def __init__(self, report) -> None:  # report: flightdeck.data.expectations.ValidationReport
        self.report = report
        super().__init__(report.summary())


class ModelNotFoundError(FlightdeckError):
    """A registered model, version or alias does not exist."""

    def __init__(self, model: str, ref: str, fix: str = "register a version first (DAG train_register)") -> None:
        self.model = model
        self.ref = ref
        super().__init__(f"model {model!r} has no {ref}. Fix: {fix}.")


class ParityError(FlightdeckError):
    """An exported artifact does not reproduce its source model within tolerance."""

    def __init__(self, artifact: str, max_abs_diff: float, tolerance: float) -> None:
        self.artifact = artifact
        self.max_abs_diff = max_abs_diff
        self.tolerance = tolerance
        super().__init__(
            f"{artifact}: max |Δp| = {max_abs_diff:.3g} exceeds tolerance {tolerance:.1g}. "
            "Fix: choose a model type whose conversion is exact (see docs) or check the converter version."
        )
