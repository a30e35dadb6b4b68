"""The cockpit plugin in a real browser (Playwright driving Debian's Chromium) on the session's
`airflow standalone`, with live data: the release world's gateway and registry, the scored days
under its FLIGHTDECK_HOME, and a promote_canary run of this test's own that parks at its approval,
is rejected through the REST API and rolls back.

The standalone signs every visitor in as admin (`simple_auth_manager_all_admins`), so it cannot
show a refusal; tests/unit/cockpit/test_auth.py proves over plain HTTP that the cockpit's app
refuses a caller without Airflow credentials.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from flightdeck.devtools.airflow_api import AirflowRest
from tests.support.models import MODEL
from tests.support.poll import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

CHROMIUM = "/usr/bin/chromium"
FAST = {"model_name": MODEL, "steps": [50], "bake_seconds": 3, "max_step_seconds": 60, "look_seconds": 1,
        "post_promotion_bake_seconds": 3,
        "gates": {"min_requests": 100, "min_requests_hard_fail": 30, "min_rows_for_distribution": 200},
        "backtest": {"auc_margin": 0.05, "logloss_margin": 1.0, "min_labelled_rows": 200, "max_rows": 2000}}


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


def _cockpit_frame(page, airflow_url: str, view: str):
    """Open the cockpit's `view` from Airflow's navigation route and return its iframe."""
    page.goto(f"{airflow_url}/plugin/cockpit-{view}", wait_until="domcontentloaded")
    frame = page.frame_locator(f"iframe[src*='/cockpit/{view}']")
    frame.locator("h1").wait_for(timeout=60_000)
    return frame


def test_the_cockpit_views_show_live_data_in_a_browser(airflow, release_world, browser, tmp_path):
    from playwright.sync_api import expect

    api = AirflowRest(airflow.url)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    airflow.set_paused("promote_canary", False)
    try:
        release_world.reset(candidate="2")
        with release_world.load():
            run_id = api.trigger("promote_canary", FAST)
            eventually(lambda: api.task_states("promote_canary", run_id).get("approve") == "awaiting_input",
                       300, 2, f"{run_id} to wait for its approval")
            parked = datetime.now(UTC)
            with release_world.client() as gateway:
                routes = gateway.routes()
            page = browser.new_page(viewport={"width": 1440, "height": 1000})

            # Deployments: every endpoint of the live route table, the route version and its history.
            frame = _cockpit_frame(page, airflow.url, "deployments")
            for endpoint, spec in routes["document"]["endpoints"].items():
                card = frame.locator(f".endpoint[data-endpoint='{endpoint}']")
                expect(card).to_be_visible()
                for variant in spec["variants"]:
                    expect(card.locator("td", has_text=variant).first).to_be_visible()
            expect(frame.locator("body")).to_contain_text(f"Route table version {routes['version']}")
            expect(frame.locator("table.history")).to_contain_text("test reset")
            page.screenshot(path=str(shots / "cockpit-deployments.png"), full_page=True)

            # Releases: this run waits for a human, its step-1 gate report and picture are shown, and
            # the link leads to Airflow's Required Actions for the run.
            frame = _cockpit_frame(page, airflow.url, "releases")
            card = frame.locator(f".release[data-run='{run_id}']")
            expect(card).to_contain_text("awaiting approval")
            expect(card.locator("table.gate-report").first).to_contain_text("error_rate")
            expect(card.locator("svg.cs").first).to_be_visible()
            link = card.locator("a", has_text="Required Actions")
            assert link.get_attribute("href") == \
                f"/dags/promote_canary/runs/{quote(run_id, safe='')}/required_actions"
            page.screenshot(path=str(shots / "cockpit-releases-pending.png"), full_page=True)
            link.click()  # Airflow's Required Actions page of the run opens in the cockpit's frame
            eventually(lambda: any(re.search(r"/dags/promote_canary/runs/[^/]+/required_actions$", f.url)
                                   for f in page.frames), 60, 0.5, "the Required Actions page in the frame")
            page.screenshot(path=str(shots / "airflow-required-actions.png"))

            api.respond("promote_canary", run_id, "Reject", parked_since=parked)
            eventually(lambda: api.run_state("promote_canary", run_id) in ("success", "failed"), 300, 2,
                       f"{run_id} to roll back")

        # The same run, rolled back, in the "Cockpit" tab of its DAG-run page.
        page.goto(f"{airflow.url}/dags/promote_canary/runs/{quote(run_id, safe='')}/plugin/cockpit-release",
                  wait_until="domcontentloaded")
        frame = page.frame_locator("iframe[src*='/cockpit/run/promote_canary/']")
        expect(frame.locator(f".release[data-run='{run_id}']")).to_contain_text("rolled back", timeout=60_000)
        expect(frame.locator("body")).to_contain_text("approval: Reject")
        expect(frame.locator("body")).to_contain_text("rollback")
        page.goto(f"{airflow.url}/cockpit/releases/promote_canary/{quote(run_id, safe='')}")
        page.screenshot(path=str(shots / "cockpit-release-rolled-back.png"), full_page=True)

        # Models: the release world's versions with their aliases and this release's audit record.
        frame = _cockpit_frame(page, airflow.url, "models")
        model = frame.locator(f".model[data-model='{MODEL}']")
        aliases = release_world.registry().aliases(MODEL)
        for alias, version in aliases.items():
            expect(model).to_contain_text(f"{alias} → v{version}")
        expect(model).to_contain_text("rolled_back")
        page.screenshot(path=str(shots / "cockpit-models.png"), full_page=True)

        # Batch and experiments: exactly the scored days the store holds (test_backfill's, when it ran).
        frame = _cockpit_frame(page, airflow.url, "batch")
        reports = airflow.home / "reports"
        days = sorted(p.name.removeprefix("ds=") for p in reports.glob("ds=*") if (p / "report.json").exists())
        if days:
            rows = frame.locator("table.days tr")
            expect(rows).to_have_count(len(days) + 1)
            newest = json.loads((reports / f"ds={days[-1]}" / "report.json").read_text())
            expect(frame.locator("table.days")).to_contain_text(f"v{newest['model_version']}")
            for day in days:
                expect(frame.locator("table.days")).to_contain_text(day)
        else:
            expect(frame.locator("body")).to_contain_text("No scored day yet")
        page.screenshot(path=str(shots / "cockpit-batch.png"), full_page=True)
        page.close()
    finally:
        airflow.set_paused("promote_canary", True)
        api.close()
    print(f"screenshots in {shots}")
