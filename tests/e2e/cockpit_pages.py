"""The cockpit plugin's pages in a real browser (Playwright driving Debian's Chromium), checked
inside the promotion scenarios of test_release_approvals.py: their runs park at the approval
(the pending view) and end rolled back (the run's tab, Models, Batch), so the cockpit needs no
promotion of its own; test_backfill.py looks at Batch once its backfill has written the partitions.
Pages come from tests/e2e/browser.py.

The standalone signs every visitor in as admin (`simple_auth_manager_all_admins`), so it cannot
show a refusal; tests/unit/cockpit/test_auth.py proves over plain HTTP that the cockpit's app
refuses a caller without Airflow credentials.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

from tests.support.models import MODEL


def cockpit_frame(page, airflow_url: str, view: str):
    """Open the cockpit's `view` from Airflow's navigation route and return its iframe."""
    page.goto(f"{airflow_url}/plugin/cockpit-{view}", wait_until="domcontentloaded")
    frame = page.frame_locator(f"iframe[src*='/cockpit/{view}']")
    frame.locator("h1").wait_for(timeout=60_000)
    return frame


def check_pending_release(page, airflow_url: str, routes: dict, dag_id: str, run_id: str, shots: Path) -> None:
    """Deployments shows the live route table and its history; Releases shows the parked run with its
    gate report and picture, and links to Airflow's Required Actions of the run (the link's target is
    checked; following it inside the plugin's sandboxed frame proved flaky under load)."""
    from playwright.sync_api import expect

    frame = cockpit_frame(page, airflow_url, "deployments")
    for endpoint, spec in routes["document"]["endpoints"].items():
        card = frame.locator(f".endpoint[data-endpoint='{endpoint}']")
        expect(card).to_be_visible()
        for variant in spec["variants"]:
            expect(card.locator("td", has_text=variant).first).to_be_visible()
    expect(frame.locator("body")).to_contain_text(f"Route table version {routes['version']}")
    expect(frame.locator("table.history")).to_contain_text("test reset")
    page.screenshot(path=str(shots / "cockpit-deployments.png"), full_page=True)

    frame = cockpit_frame(page, airflow_url, "releases")
    card = frame.locator(f".release[data-run='{run_id}']")
    expect(card).to_contain_text("awaiting approval")
    expect(card.locator("table.gate-report").first).to_contain_text("error_rate")
    expect(card.locator("svg.cs").first).to_be_visible()
    link = card.locator("a", has_text="Required Actions")
    assert link.get_attribute("href") == f"/dags/{dag_id}/runs/{quote(run_id, safe='')}/required_actions"
    page.screenshot(path=str(shots / "cockpit-releases-pending.png"), full_page=True)


def check_rolled_back_release(page, airflow_url: str, airflow_home: Path, registry, dag_id: str, run_id: str,
                              shots: Path) -> None:
    """The run's Cockpit tab says rolled back by the rejection; Models shows the aliases and the
    rollback's audit record; Batch lists exactly the scored days on disk (`check_batch`)."""
    from playwright.sync_api import expect

    page.goto(f"{airflow_url}/dags/{dag_id}/runs/{quote(run_id, safe='')}/plugin/cockpit-release",
              wait_until="domcontentloaded")
    frame = page.frame_locator(f"iframe[src*='/cockpit/run/{dag_id}/']")
    expect(frame.locator(f".release[data-run='{run_id}']")).to_contain_text("rolled back", timeout=60_000)
    expect(frame.locator("body")).to_contain_text("approval: Reject")
    expect(frame.locator("body")).to_contain_text("rollback")
    page.goto(f"{airflow_url}/cockpit/releases/{dag_id}/{quote(run_id, safe='')}")
    page.screenshot(path=str(shots / "cockpit-release-rolled-back.png"), full_page=True)

    frame = cockpit_frame(page, airflow_url, "models")
    model = frame.locator(f".model[data-model='{MODEL}']")
    for alias, version in registry.aliases(MODEL).items():
        expect(model).to_contain_text(f"{alias} → v{version}")
    expect(model).to_contain_text("rolled_back")
    page.screenshot(path=str(shots / "cockpit-models.png"), full_page=True)

    check_batch(page, airflow_url, airflow_home, shots)


def check_batch(page, airflow_url: str, airflow_home: Path, shots: Path, name: str = "cockpit-batch.png") -> list[str]:
    """Batch lists exactly the scored days on disk, newest with its model version; returns the days."""
    from playwright.sync_api import expect

    frame = cockpit_frame(page, airflow_url, "batch")
    reports = airflow_home / "reports"
    days = sorted(p.name.removeprefix("ds=") for p in reports.glob("ds=*") if (p / "report.json").exists())
    if days:
        expect(frame.locator("table.days tr")).to_have_count(len(days) + 1)
        newest = json.loads((reports / f"ds={days[-1]}" / "report.json").read_text())
        expect(frame.locator("table.days")).to_contain_text(f"v{newest['model_version']}")
        for day in days:
            expect(frame.locator("table.days")).to_contain_text(day)
    else:
        expect(frame.locator("body")).to_contain_text("No scored day yet")
    page.screenshot(path=str(shots / name), full_page=True)
    return days
