"""Lambda's metrics as CloudWatch receives them, for tests: per alias and executed version."""

from __future__ import annotations

from datetime import UTC, datetime


def emit(cloudwatch, function: str, alias: str, version: str, durations_ms: list[float], errors: int = 0,
         when: datetime | None = None) -> None:
    """What Lambda publishes for `len(durations_ms)` invocations of `version` through `alias`:
    Invocations, Errors and Duration (as statistic sets) under FunctionName + Resource, and
    again with ExecutedVersion (the dimension set the canary gates read)."""
    when = when or datetime.now(UTC)
    resource = [{"Name": "FunctionName", "Value": function}, {"Name": "Resource", "Value": f"{function}:{alias}"}]
    for dimensions in (resource, [*resource, {"Name": "ExecutedVersion", "Value": version}]):
        cloudwatch.put_metric_data(Namespace="AWS/Lambda", MetricData=[
            {"MetricName": "Invocations", "Dimensions": dimensions, "Timestamp": when,
             "Value": float(len(durations_ms)), "Unit": "Count"},
            {"MetricName": "Errors", "Dimensions": dimensions, "Timestamp": when, "Value": float(errors),
             "Unit": "Count"},
            {"MetricName": "Duration", "Dimensions": dimensions, "Timestamp": when, "Unit": "Milliseconds",
             "StatisticValues": {"SampleCount": float(len(durations_ms)), "Sum": float(sum(durations_ms)),
                                 "Minimum": float(min(durations_ms)), "Maximum": float(max(durations_ms))}},
        ])
