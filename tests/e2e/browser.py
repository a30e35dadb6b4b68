"""The one browser setup of the end-to-end tests: Debian's Chromium driven by Playwright (Playwright's
own browser download cannot run here), pages of one size in UTC, and the folder screenshots go to.

Used by the `browser` and `screenshots` fixtures (conftest.py), the cockpit checks
(cockpit_pages.py) and the operator actions in Airflow's own UI (ui_actions.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1440, "height": 1000}
# Airflow's UI is slow to answer on a busy two-core machine: Playwright waits 30 s for an action and
# 5 s for an `expect` by default.
TIMEOUT_MS = 60_000
# Where screenshots go when set (e.g. to refresh the guide's pictures); a temporary folder otherwise.
SHOTS_ENV = "FLIGHTDECK_UI_SCREENSHOTS"


@contextmanager
def launch() -> Iterator:
    """A headless Chromium; fails with the fix when Debian's package is missing."""
    import pytest

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)  # `expect` has its own default, 5 s
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@contextmanager
def open_page(browser) -> Iterator:
    """A fresh page (its own context: no state shared between tests), dates shown in UTC as
    Airflow stores them, closed afterwards."""
    context = browser.new_context(viewport=VIEWPORT, timezone_id="UTC")
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def leave(page) -> None:
    """Put the page on about:blank while a test waits for runs: an Airflow page with active runs
    re-polls the API and re-renders every few seconds, which costs the browser and the api-server
    CPU that the scheduler and the tasks need."""
    page.goto("about:blank")


def screenshots_folder(default: Path) -> Path:
    folder = Path(os.environ.get(SHOTS_ENV) or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
