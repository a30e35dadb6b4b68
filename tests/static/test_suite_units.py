"""The suite's units of work under pytest-xdist (tests/conftest.py): each end-to-end module belongs
to a unit, and the units named there exist, so a renamed module cannot silently fall into the
wrong unit and share a standalone with a scenario it trips over."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import E2E_UNITS, e2e_unit

REPO = Path(__file__).resolve().parents[2]


def test_the_named_end_to_end_modules_exist():
    missing = [path for path in E2E_UNITS if not (REPO / path).is_file()]
    assert not missing, f"E2E_UNITS names modules that do not exist: {missing}"


def test_end_to_end_modules_fall_into_two_units_and_nothing_else_does():
    modules = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "tests" / "e2e").glob("test_*.py"))
    units = {path: e2e_unit(path) for path in modules}
    assert set(units.values()) == {"tests/e2e/#operations", "tests/e2e/#releases"}, units
    # The scenarios that toggle batch_score run on different standalones.
    assert units["tests/e2e/test_backfill.py"] != units["tests/e2e/test_pipeline.py"]
    assert e2e_unit("tests/integration/test_batch_score.py") is None
