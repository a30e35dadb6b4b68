"""CloudWatchSource against a moto server: Lambda's metrics per executed version of an alias
become one gate window per variant."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from flightdeck.delivery.sources import make_source
from flightdeck.delivery.sources.base import MetricSourceError, WindowStart
from flightdeck.delivery.sources.cloudwatch import CloudWatchSource, period_sumsq
from flightdeck.delivery.window import VariantWindow
from tests.integration.delivery.conftest import REGION
from tests.integration.serverless.cloudwatch_metrics import emit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FUNCTION = "flightdeck-scorer"


def test_windows_per_executed_version_of_the_alias(moto_server):
    cloudwatch = moto_server.client("cloudwatch")
    since = time.time()
    stable = [12.0, 15.0, 11.0, 30.0] * 25            # 100 invocations of version 1
    canary = [14.0, 90.0, 16.0, 20.0, 18.0]           # 5 of version 2, 2 of them failed
    emit(cloudwatch, FUNCTION, "live", "1", stable)
    emit(cloudwatch, FUNCTION, "live", "2", canary, errors=2)
    # Not this window: another alias of the function, and version 1 an hour ago.
    emit(cloudwatch, FUNCTION, "staging", "3", [5.0, 5.0])
    emit(cloudwatch, FUNCTION, "live", "1", [500.0] * 7, errors=7,
         when=datetime.now(UTC) - timedelta(hours=1))

    source = CloudWatchSource(FUNCTION, "live", region=REGION, endpoint_url=moto_server.url)
    assert source.versions() == ["1", "2"]
    windows = source.windows(WindowStart(0, since))
    assert set(windows) == {("1", "1"), ("2", "2")}
    one, two = windows[("1", "1")], windows[("2", "2")]
    assert (one.requests, one.errors, two.requests, two.errors) == (100, 0, 5, 2)
    assert one.latency_sum == pytest.approx(sum(stable) / 1000)
    assert two.latency_sum == pytest.approx(sum(canary) / 1000)
    # The spread is bounded from Min/Max (never below the truth), exact for one period.
    assert two.latency_sumsq == pytest.approx(period_sumsq(sum(canary), 5, 14.0, 90.0) / 1e6)
    assert two.latency_sumsq >= sum((d / 1000) ** 2 for d in canary)
    # A Lambda alias splits traffic: there is never a shadow window.
    assert source.windows(WindowStart(0, since), role="shadow") == {}


def test_an_alias_without_metrics_has_no_windows_and_config_round_trips(moto_server):
    source = make_source("cloudwatch", function_name=FUNCTION, alias="live", region=REGION,
                         endpoint_url=moto_server.url, period=60)
    assert source.windows(WindowStart(0, time.time())) == {}
    again = make_source(**source.config())
    assert again.config() == source.config()
    emit(moto_server.client("cloudwatch"), FUNCTION, "live", "4", [10.0])
    assert again.windows(WindowStart(0, time.time() - 5)) == {
        ("4", "4"): VariantWindow(requests=1, errors=0, latency_sum=0.01, latency_sumsq=pytest.approx(1e-4))}


def test_an_unreachable_cloudwatch_is_a_transient_source_error():
    import boto3
    from botocore.config import Config

    client = boto3.client("cloudwatch", region_name=REGION, endpoint_url="http://127.0.0.1:9",
                          aws_access_key_id="testing", aws_secret_access_key="testing",
                          config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=1))
    source = CloudWatchSource(FUNCTION, "live", client=client)
    with pytest.raises(MetricSourceError, match="cloudwatch:flightdeck-scorer:live") as caught:
        source.windows(WindowStart(0, time.time()))
    assert caught.value.transient
