"""`make_source`: a metric source from its JSON-safe configuration.

A rollout stores the configuration (an Airflow trigger serialises it) and rebuilds the
source at every look; `source.config()` gives the same arguments back.
"""

from __future__ import annotations

from typing import Any, Literal

from flightdeck.delivery.sources.base import MetricSource
from flightdeck.delivery.sources.cloudwatch import CloudWatchSource
from flightdeck.delivery.sources.gateway import GatewayStatsSource
from flightdeck.delivery.sources.prometheus import PrometheusSource
from flightdeck.errors import ConfigError


def make_source(kind: Literal["gateway", "prometheus", "cloudwatch"], url: str = "", endpoint: str = "",
                timeout: float = 10.0, **options: Any) -> MetricSource:
    """The metric source `kind` reading `endpoint` at `url` (the gateway's or Prometheus's base URL).

    `options` are PrometheusSource's `selector` and `lookback_s`. `kind` "cloudwatch" reads a
    Lambda alias instead (`CloudWatchSource`: options function_name, alias, region,
    endpoint_url, period). `source.config()` gives these arguments back, JSON-safe.
    """
    if kind == "cloudwatch":
        unknown = set(options) - {"function_name", "alias", "region", "endpoint_url", "period"}
        if unknown:
            raise ConfigError("options", f"the cloudwatch source takes no {sorted(unknown)}",
                              "use function_name, alias, region, endpoint_url and period")
        return CloudWatchSource(**options)
    if not url:
        raise ConfigError("url", f"the {kind} metric source needs a base URL", "give the gateway's or "
                          "Prometheus's URL, e.g. http://127.0.0.1:9090")
    if not endpoint:
        raise ConfigError("endpoint", "the metric source needs the gateway endpoint to read",
                          "give the endpoint's name from the route table")
    if kind == "gateway":
        if options:
            raise ConfigError("options", f"the gateway source takes no {sorted(options)}", "drop them")
        return GatewayStatsSource(url, endpoint, timeout)
    if kind == "prometheus":
        unknown = set(options) - {"selector", "lookback_s"}
        if unknown:
            raise ConfigError("options", f"the prometheus source takes no {sorted(unknown)}",
                              "use only selector and lookback_s")
        return PrometheusSource(url, endpoint, timeout, **options)
    raise ConfigError("kind", f"unknown metric source {kind!r}", "use 'gateway', 'prometheus' or 'cloudwatch'")
