"""The release world on a fresh PostgreSQL gateway database, shared by a module's tests."""

from __future__ import annotations

import pytest

from tests.integration.release.world import release_world
from tests.support.services import new_database


@pytest.fixture(scope="module")
def world(tmp_path_factory, postgres_admin):
    with new_database(postgres_admin) as url, release_world(tmp_path_factory.mktemp("release"), url, prometheus=True) as w:
        yield w
