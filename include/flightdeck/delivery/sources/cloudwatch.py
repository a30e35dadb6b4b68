"""A metric source for AWS Lambda rollouts: the function's own metrics in CloudWatch.

Lambda publishes, for invocations through an alias, `Invocations`, `Errors` and `Duration`
(ms) in the `AWS/Lambda` namespace with the dimensions `FunctionName`, `Resource`
(`function:alias`) and `ExecutedVersion` (the published version that ran: with a weighted
alias, the baseline or the candidate). `CloudWatchSource` reads them with GetMetricData and
returns a `VariantWindow` per executed version, keyed `(version, version)`, so the gates
compare the two versions behind the alias as they compare two gateway variants.

How the window differs from the gateway's running sums:

* Resolution: one-minute periods (`period`). The window starts at the period that holds
  `WindowStart.epoch`, so up to a minute of traffic before the step can leak in, and
  CloudWatch shows a minute's numbers a minute or two late.
* `requests` = Invocations and `errors` = Errors (the function raised or timed out); a 4xx
  answer the handler returns is a success here, as it is in the gateway's stats.
* `latency_sumsq` is bounded, not measured: CloudWatch gives each period's Sum,
  SampleCount, Minimum and Maximum of Duration, and the variance of values in [m, M] with
  mean μ is at most (M − μ)(μ − m) (Bhatia–Davis). The gates therefore see a latency spread
  at least as wide as the truth: they decide more slowly, never over-confidently.
* No scores (the handler does not publish them): the score-distribution check does not
  apply, and there is no shadow role.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from flightdeck.delivery.sources.base import MetricSourceError, WindowStart
from flightdeck.delivery.window import VariantWindow
from flightdeck.errors import ConfigError

NAMESPACE = "AWS/Lambda"
_STATS = (("Invocations", "Sum"), ("Errors", "Sum"), ("Duration", "Sum"), ("Duration", "SampleCount"),
          ("Duration", "Minimum"), ("Duration", "Maximum"))


def period_sumsq(total: float, count: float, low: float, high: float) -> float:
    """An upper bound of Σx² for `count` values in [low, high] that sum to `total`.

    count · (variance bound + mean²), with the Bhatia–Davis bound (high − μ)(μ − low)."""
    if count <= 0:
        return 0.0
    mean = total / count
    variance = max((high - mean) * (mean - low), 0.0)
    return count * (variance + mean * mean)


class CloudWatchSource:
    """Windows per executed version of a Lambda alias, from CloudWatch (see module docstring).

    `client` is a boto3 CloudWatch client or None (built from `region` / `endpoint_url`).
    """

    kind = "cloudwatch"

    def __init__(self, function_name: str, alias: str, region: str | None = None,
                 endpoint_url: str | None = None, period: int = 60, client: Any = None) -> None:
        if not function_name or not alias:
            raise ConfigError("cloudwatch source", "needs the function name and the alias",
                              "pass target_options function_name and alias")
        if period < 1 or (period < 60 and period not in (1, 5, 10, 30)):
            raise ConfigError("period", f"{period} s is not a CloudWatch period", "use 60 (or 1, 5, 10, 30 for "
                              "high-resolution metrics)")
        self.function_name = function_name
        self.alias = alias
        self.region = region
        self.endpoint_url = endpoint_url
        self.period = period
        self._client = client

    def config(self) -> dict:
        config = {"kind": self.kind, "function_name": self.function_name, "alias": self.alias,
                  "period": self.period}
        if self.region:
            config["region"] = self.region
        if self.endpoint_url:
            config["endpoint_url"] = self.endpoint_url
        return config

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("cloudwatch", region_name=self.region, endpoint_url=self.endpoint_url)
        return self._client

    @property
    def resource(self) -> str:
        return f"{self.function_name}:{self.alias}"

    def _dimensions(self, version: str | None = None) -> list[dict]:
        dimensions = [{"Name": "FunctionName", "Value": self.function_name},
                      {"Name": "Resource", "Value": self.resource}]
        if version is not None:
            dimensions.append({"Name": "ExecutedVersion", "Value": version})
        return dimensions

    def versions(self) -> list[str]:
        """Executed versions that have metrics under the alias."""
        found = set()
        for page in self.client.get_paginator("list_metrics").paginate(
                Namespace=NAMESPACE, MetricName="Invocations", Dimensions=self._dimensions()):
            for metric in page["Metrics"]:
                for dimension in metric["Dimensions"]:
                    if dimension["Name"] == "ExecutedVersion":
                        found.add(dimension["Value"])
        return sorted(found)

    def windows(self, since: WindowStart, role: str = "live") -> dict[tuple[str, str], VariantWindow]:
        """A window per executed version with invocations since `since.epoch` (live role only)."""
        if role not in ("live", "shadow"):
            raise ValueError(f"role must be live or shadow, got {role!r}")
        if role == "shadow":
            return {}  # a Lambda alias splits traffic; it never mirrors it
        try:
            return self._windows(since.epoch)
        except Exception as exc:
            if isinstance(exc, MetricSourceError):
                raise
            code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code", "")
            transient = code in ("Throttling", "ThrottlingException", "InternalServiceError", "") or \
                type(exc).__name__ in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError")
            raise MetricSourceError(f"cloudwatch:{self.resource}", f"GetMetricData failed ({type(exc).__name__}: "
                                    f"{exc})", "check the AWS credentials, region and the function/alias names",
                                    transient=transient) from exc

    def _windows(self, start: float) -> dict[tuple[str, str], VariantWindow]:
        from datetime import UTC, datetime

        versions = self.versions()
        if not versions:
            return {}
        begin = start - start % self.period
        end = time.time() + self.period
        queries = [{"Id": f"m{i}_{j}", "ReturnData": True,
                    "MetricStat": {"Metric": {"Namespace": NAMESPACE, "MetricName": metric,
                                              "Dimensions": self._dimensions(version)},
                                   "Period": self.period, "Stat": stat}}
                   for i, version in enumerate(versions) for j, (metric, stat) in enumerate(_STATS)]
        values: dict[str, dict[float, float]] = defaultdict(dict)
        for chunk in range(0, len(queries), 500):  # GetMetricData takes up to 500 queries
            pages = self.client.get_paginator("get_metric_data").paginate(
                MetricDataQueries=queries[chunk:chunk + 500], StartTime=datetime.fromtimestamp(begin, UTC),
                EndTime=datetime.fromtimestamp(end, UTC), ScanBy="TimestampAscending")
            for page in pages:
                for result in page["MetricDataResults"]:
                    for stamp, value in zip(result["Timestamps"], result["Values"], strict=True):
                        values[result["Id"]][stamp.timestamp()] = float(value)
        windows = {}
        for i, version in enumerate(versions):
            series = [values.get(f"m{i}_{j}", {}) for j in range(len(_STATS))]
            invocations, errors, total, count, low, high = series
            latency_sum = sum(total.values()) / 1000.0
            sumsq = sum(period_sumsq(total[t], count.get(t, 0.0), low.get(t, total[t] / max(count.get(t, 1), 1)),
                                     high.get(t, total[t] / max(count.get(t, 1), 1)))
                        for t in total) / 1e6
            window = VariantWindow(requests=round(sum(invocations.values())), errors=round(sum(errors.values())),
                                   latency_sum=latency_sum, latency_sumsq=sumsq)
            if window != VariantWindow():
                windows[(version, version)] = window
        return windows
