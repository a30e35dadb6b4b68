"""Every page of the guide with ```` ```bash title="Try it" ```` blocks is one test: its blocks
run, in order, as one script against a copy of the prepared home (tests/docs/conftest.py)."""

from __future__ import annotations

import pytest

from tests.docs.conftest import (
    REPO,
    page_requirements,
    page_timeout,
    pages_with_try_it,
    require_page_services,
    run_try_it,
    try_it_blocks,
)

PAGES = pages_with_try_it()


@pytest.mark.integration
@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(REPO / "docs").as_posix() for p in PAGES])
def test_try_it_blocks_run(page, guide_home, try_it_workdir):
    require_page_services(page.read_text())
    run = run_try_it(page, guide_home, try_it_workdir)
    assert run.returncode == 0, run.failure()


@pytest.mark.integration
def test_the_harness_reports_a_failing_block(tmp_path, guide_home, try_it_workdir):
    """A block that fails makes the run fail and the report shows its output; a background
    process the script left running is stopped with the group."""
    page = tmp_path / "page.md"
    page.write_text('# p\n\n```bash title="Try it"\nsleep 300 &\necho "$FD_PORT" > "$FLIGHTDECK_HOME/port"\n'
                    'test -d "$FLIGHTDECK_HOME/data/raw/ds=2026-01-21"\necho visible-output\nfalse\n```\n')
    run = run_try_it(page, guide_home, try_it_workdir, timeout=30)
    assert run.returncode == 1
    assert "visible-output" in run.failure()
    assert (try_it_workdir / "home" / "port").read_text().strip().isdigit()
    assert not (guide_home / "port").exists()


def test_blocks_are_found_in_order_with_their_indentation_removed():
    page = """# p
```bash
echo plain blocks are not run
```
```bash title="Try it"
echo one
```
!!! note
    ````bash title="Try it"
    echo two
      echo indented
    ````
<!-- try-it-timeout: 120 -->
<!-- try-it-requires: redis -->
"""
    assert try_it_blocks(page) == ["echo one", "echo two\n  echo indented"]
    assert page_timeout(page) == 120
    assert page_requirements(page) == ["redis"]


def test_an_unclosed_block_is_an_error():
    with pytest.raises(ValueError, match="never closed"):
        try_it_blocks('```bash title="Try it"\necho one\n')
