"""The release world (tests/support/release_world.py) of the promotion DAG tests: one for this
package, stopped after its last test."""

from __future__ import annotations

import pytest

from tests.support.release_world import package_world


@pytest.fixture(scope="package")
def world(tmp_path_factory, postgres_admin):
    with package_world(tmp_path_factory, postgres_admin) as release_world:
        yield release_world
