"""What an operator does in Airflow 3's own UI (the React app), as page objects for the end-to-end
scenarios: trigger a DAG from its trigger form with Params, create a backfill from the backfill
dialog, unpause a DAG with its toggle and read its next run, follow runs in the Runs tab, and
answer a Required Action (human-in-the-loop approval) with its report in view.

The selectors are the UI's own: Param fields are `#element_<name>`, the date-time pickers
`datetime-input`, the pause switch `toggle-pause`, table cells `table-cell-<column>`. Each action
saves a screenshot to the folder it is given; the scenario checks the outcome in Airflow's
database or REST API as well, not only on the screen.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from urllib.parse import quote, unquote

RUN_PAGE = "/runs/"


def _modal(page):
    """The open modal. A date-time picker is a popover with role "dialog" as well, and may still
    be on screen while it closes."""
    return page.locator("[role=dialog]:not([data-scope=popover])")


def _away_from_toasts(page) -> None:
    """A toast pauses while the pointer is on it and covers the dialog's footer buttons."""
    page.mouse.move(5, 5)


class TriggerForm:
    """The DAG page's "Trigger" dialog on its "Single Run" tab, Run Parameters filled per Param."""

    def __init__(self, page, airflow_url: str, dag_id: str) -> None:
        self.page, self.url, self.dag_id = page, airflow_url, dag_id

    def open(self) -> TriggerForm:
        self.page.goto(f"{self.url}/dags/{self.dag_id}", wait_until="domcontentloaded")
        self.page.get_by_role("button", name="Trigger Dag").click()
        _modal(self.page).get_by_text("Run Parameters").wait_for()
        return self

    def fill(self, params: dict[str, str]) -> TriggerForm:
        """Type each Param into its field (dates as YYYY-MM-DD: the fields are date inputs)."""
        modal = _modal(self.page)
        for name, value in params.items():
            modal.locator(f"#element_{name}").fill(str(value))
        return self

    @property
    def submit_button(self):
        return _modal(self.page).get_by_role("button", name="Trigger", exact=True)

    def submit_rejected(self, shots: Path, name: str) -> str:
        """Submit Params that Airflow refuses: the form stays open with the refusal at its top;
        returns the refusal's text."""
        from playwright.sync_api import expect

        self.submit_button.click()
        problem = _modal(self.page).get_by_text("Invalid input for param")
        expect(problem).to_be_visible()
        _away_from_toasts(self.page)
        problem.scroll_into_view_if_needed()
        self.page.screenshot(path=str(shots / name))
        assert self.page.url.rstrip("/").endswith(f"/dags/{self.dag_id}"), f"the form left for {self.page.url}"
        return problem.inner_text()

    def submit(self, shots: Path, name: str) -> str:
        """Submit accepted Params; the UI opens the new run's page. Returns its run id."""
        _away_from_toasts(self.page)
        # A refusal's toast may still cover the button after the previous attempt.
        self.page.get_by_text("Failed to Trigger Dag").wait_for(state="hidden")
        self.submit_button.click()
        self.page.wait_for_url(f"**/dags/{self.dag_id}{RUN_PAGE}**")
        run_id = unquote(self.page.url.split(RUN_PAGE, 1)[1].split("/", 1)[0])
        self.page.get_by_text("Dag Run Triggered").wait_for()
        self.page.screenshot(path=str(shots / name))
        return run_id


def create_backfill(page, airflow_url: str, dag_id: str, start: datetime, end: datetime, max_active_runs: int,
                    expected_runs: int, shots: Path, name: str) -> None:
    """The trigger dialog's "Backfill" tab: the date range picked in the date-time pickers, max active
    runs, and the DAG left paused (unticks "Unpause … on trigger"); the dialog's dry run must
    announce `expected_runs` runs before "Run Backfill" is pressed."""
    from playwright.sync_api import expect

    page.goto(f"{airflow_url}/dags/{dag_id}", wait_until="domcontentloaded")
    page.get_by_role("button", name="Trigger Dag").click()
    modal = _modal(page)
    modal.get_by_text("Backfill", exact=True).click()
    for index, moment in enumerate((start, end)):
        modal.get_by_test_id("datetime-input").nth(index).click()
        picker = page.locator("[data-scope=popover][data-part=content][data-state=open]")
        picker.get_by_placeholder("YYYY/MM/DD").fill(moment.strftime("%Y/%m/%d"))
        picker.get_by_placeholder("HH:mm").fill(moment.strftime("%H:%M"))
        modal.get_by_text("Date Range").click()  # closes the picker
        expect(picker).to_have_count(0)
    modal.locator("input[name=max_active_runs]").fill(str(max_active_runs))
    modal.get_by_text(f"Unpause {dag_id} on trigger").click()  # shown while the DAG is paused
    expect(modal).to_contain_text(f"{expected_runs} runs will be triggered.")
    page.screenshot(path=str(shots / name))
    modal.get_by_role("button", name="Run Backfill").click()
    page.get_by_text("Backfill generated").wait_for()
    expect(page.get_by_text("Backfill in progress")).to_be_visible()


def unpause(page, airflow_url: str, dag_id: str, shots: Path, name: str) -> None:
    """Switch the DAG on with the toggle beside its name."""
    from playwright.sync_api import expect

    page.goto(f"{airflow_url}/dags/{dag_id}", wait_until="domcontentloaded")
    toggle = page.get_by_test_id("toggle-pause")
    expect(toggle).to_have_attribute("data-state", "unchecked")
    toggle.click()
    expect(toggle).to_have_attribute("data-state", "checked")
    page.screenshot(path=str(shots / name))


def next_run_shown(page, airflow_url: str, dag_id: str, shots: Path, name: str) -> str:
    """The "Next Run" of the DAG page's header, as the ISO time it is rendered from."""
    page.goto(f"{airflow_url}/dags/{dag_id}", wait_until="domcontentloaded")
    shown = page.get_by_test_id("stat").filter(has_text="Next Run").locator("time")
    shown.wait_for()
    page.screenshot(path=str(shots / name))
    return shown.get_attribute("datetime")


def runs_tab(page, airflow_url: str, dag_id: str):
    """The DAG's Runs tab; returns its table rows."""
    page.goto(f"{airflow_url}/dags/{dag_id}/runs", wait_until="domcontentloaded")
    rows = page.locator("tbody tr")
    rows.first.wait_for()
    return rows


def check_run_row(page, airflow_url: str, dag_id: str, run_id: str, run_type: str, state: str, shots: Path,
                  name: str) -> None:
    """The Runs tab lists `run_id` with its type and state as the UI words them ("Scheduled", "Success")."""
    from playwright.sync_api import expect

    cell = page.get_by_test_id("table-cell-dag_run_id").filter(has_text=run_id)
    row = runs_tab(page, airflow_url, dag_id).filter(has=cell)
    expect(row.get_by_test_id("table-cell-run_type")).to_have_text(run_type)
    expect(row.get_by_test_id("table-cell-state")).to_have_text(state)
    page.screenshot(path=str(shots / name))


def answer_required_action(page, airflow_url: str, dag_id: str, run_id: str, option: str, report: list[str],
                           before_click, shots: Path, name: str) -> None:
    """Open the run's Required Actions, select the pending approval, check that its body shows
    every text of `report` (the gate report), call `before_click()` (the scenario waits for the
    scheduler there), press `option` and see the request leave the pending list."""
    from playwright.sync_api import expect

    page.goto(f"{airflow_url}/dags/{dag_id}/runs/{quote(run_id, safe='')}/required_actions",
              wait_until="domcontentloaded")
    modal = _modal(page)
    expect(modal.get_by_text("Pending required actions (1)")).to_be_visible()
    modal.get_by_role("row").filter(has_text="approve").first.click()
    button = modal.get_by_role("button", name=option, exact=True)
    expect(button).to_be_visible()
    for text in report:
        expect(modal).to_contain_text(text)
    page.screenshot(path=str(shots / name))
    before_click()
    button.click()
    expect(modal.get_by_text("Pending required actions (0)")).to_be_visible()
