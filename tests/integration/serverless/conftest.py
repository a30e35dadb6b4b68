"""The moto server of the delivery tests, and the Lambda platform wheels cached across runs."""

from __future__ import annotations

import pytest

from tests.integration.delivery.conftest import _moto_url, moto_server  # noqa: F401 - fixtures


@pytest.fixture(scope="session")
def wheel_cache(request):
    """manylinux wheels for the package and the platform tree installed from them, kept in
    pytest's cache (never in the repo): downloaded and installed once, not per test run."""
    from flightdeck.serverless.package import platform_tree

    cache = request.config.cache.mkdir("flightdeck-lambda-wheels")
    platform_tree(cache)
    return cache
