"""The gateway's stats endpoint as a metric source: exact windows from its running sums.

The gateway publishes per-worker totals per (variant, model_version, route version, role)
and answers GET /stats/{endpoint} with their sum (`flightdeck.serving.stats`); a window is
everything recorded under route versions >= `WindowStart.route_version`.
"""

from __future__ import annotations

import httpx

from flightdeck.delivery.sources.base import (
    MetricSourceError,
    Role,
    WindowKey,
    WindowStart,
    check_role,
    merge,
    unreachable,
)
from flightdeck.delivery.window import VariantWindow
from flightdeck.serving.client import GatewayClient, GatewayError


def window_from_stats(item: dict) -> VariantWindow:
    """A `VariantWindow` from one entry of GET /stats (`serving.stats.VariantSummary.to_dict`).

    A shadow entry's scored rows and disagreements become the window's shadow counts."""
    shadow = item.get("role") == "shadow"
    return VariantWindow(
        requests=int(item["requests"]), errors=int(item["errors"]), latency_sum=float(item["latency_sum"]),
        latency_sumsq=float(item["latency_sumsq"]), rows=int(item["rows"]),
        score_bins=tuple(int(c) for c in item["score_bins"]),
        shadow_rows=int(item["rows"]) if shadow else 0,
        shadow_disagreements=int(item["disagreements"]) if shadow else 0)


class GatewayStatsSource:
    """Windows from the gateway's running sums: GET /stats/{endpoint}?since_route_version=N&role=R.

    Exact, and summed over every worker; lags by the gateway's stats flush interval. Requests
    that failed with no fallback to answer them are not in the running sums (yet): their
    errors are visible in Prometheus only (tests/integration/release_sources, the xfail).
    """

    kind = "gateway"

    def __init__(self, base_url: str, endpoint: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.endpoint = endpoint
        self.timeout = timeout

    def config(self) -> dict:
        return {"kind": self.kind, "url": self.base_url, "endpoint": self.endpoint, "timeout": self.timeout}

    def windows(self, since: WindowStart, role: Role = "live") -> dict[WindowKey, VariantWindow]:
        check_role(role)
        url = f"{self.base_url}/stats/{self.endpoint}"
        try:
            with GatewayClient(self.base_url, timeout=self.timeout) as client:
                items = client.stats(self.endpoint, since.route_version, role)
        except httpx.HTTPError as exc:
            raise unreachable("the gateway", url, exc, "start the gateway (`flightdeck serve`) or correct the "
                              "source's url") from exc
        except GatewayError as exc:
            raise MetricSourceError(url, str(exc), "check the source's url and endpoint name",
                                    transient=exc.status >= 500) from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MetricSourceError(url, f"answered something that is not the gateway's stats ({exc!r})",
                                    "point the source's url at a flightdeck gateway") from exc
        try:
            found = [((str(item["variant"]), str(item["model_version"])), window_from_stats(item))
                     for item in items]
        except (KeyError, TypeError, ValueError) as exc:
            raise MetricSourceError(url, f"returned a malformed stats entry ({exc!r})",
                                    "upgrade the gateway and this client together") from exc
        windows: dict[WindowKey, VariantWindow] = {}
        for key, window in found:
            windows[key] = merge(windows[key], window) if key in windows else window
        return {key: window for key, window in windows.items() if window != VariantWindow()}
