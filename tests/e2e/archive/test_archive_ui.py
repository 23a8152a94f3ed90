"""The web UI's archive pages in Debian's headless chromium (issue 18 item 3): the archived
runs of a namespace, one archived run marked "from the run archive" with its attempts and a
log, and a namespace the user may not read. The real server, a real PostgreSQL and the local
control plane's RBAC; the archive is seeded with the archive's own writer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By

from tests.e2e.archive.apikit import (  # noqa: F401 - fixtures, used by name
    Server,
    Team,
    attempt_records,
    run_record,
    seed,
    seeded_url_fixture,
    server_fixture,
    team_fixture,
)
from tests.e2e.browser.conftest import Browser, chromium_driver

pytestmark = pytest.mark.local_agent


@pytest.fixture(name="browser")
def browser_fixture(server: Server) -> Iterator[Browser]:
    driver = chromium_driver()
    try:
        yield Browser(driver, server.url)
    finally:
        driver.quit()


def test_archive_pages_show_archived_runs_and_logs(browser: Browser, team: Team,
                                                  seeded_url: str) -> None:
    (_, run), (_, theirs) = run_record(team.a, "ui-gone", phase="Failed"), run_record(
        team.b, "ui-theirs")
    seed(seeded_url, [("run", run), ("run", theirs),
                      *attempt_records(run["uid"], "build", 1, "compiling\nerror: boom\n",
                                       exit_code=2)])
    browser.login(team.viewer_a, f"/namespaces/{team.a}/archive")
    link = browser.wait(lambda d: d.find_elements(By.LINK_TEXT, "ui-gone"))[0]
    assert "ui-theirs" not in browser.driver.page_source
    nav = browser.driver.find_element(By.CSS_SELECTOR, "nav a[aria-current=page]")
    assert nav.text == "Archive"
    link.click()
    browser.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#archived-attempts tbody th"))
    note = browser.driver.find_element(By.ID, "archive-note").text
    assert note.startswith("From the run archive (archived "), note
    assert browser.driver.find_element(By.ID, "archived-phase").text == "Failed"
    browser.driver.find_element(By.CSS_SELECTOR, "#archived-attempts button").click()
    log = browser.wait(lambda d: d.find_element(By.ID, "archived-log-text").text.endswith(
        "error: boom") and d.find_element(By.ID, "archived-log-text"))
    assert "compiling" in log.text

    # another namespace: the API's 403 shows, and none of its runs
    browser.open(f"/namespaces/{team.b}/archive")
    flash = browser.wait(lambda d: d.find_element(By.ID, "flash").is_displayed()
                         and d.find_element(By.ID, "flash"))
    assert "may not list workflowruns" in flash.text
    assert "ui-theirs" not in browser.driver.page_source
