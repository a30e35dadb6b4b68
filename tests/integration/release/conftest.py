"""The session's release world (tests/conftest.py), under the name the promotion DAG tests use."""

from __future__ import annotations

import pytest


@pytest.fixture
def world(release_world):
    return release_world
