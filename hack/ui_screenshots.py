"""Screenshots of the real web UI for the README: `make ui-screenshots` (docs/ui/*.png).

Starts everything on this machine (hack/ui_stage.py: local control plane, Redis, the
operator, the web server, Debian's headless chromium), applies a few workflows, starts runs
that end in each phase, and photographs the pages at a laptop's 1366x900 while a pipeline
is part way through, so the graph shows several colours at once.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from ui_stage import Stage, chromium, run, workflow

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "ui"
NS = "team-a"

PIPELINE = workflow("release", {
    "params": [{"name": "version", "required": True, "description": "the tag to release"},
               {"name": "dryRun", "type": "boolean", "default": False}],
    "steps": [
        {"name": "checkout", "script": {"source": "echo cloning; sleep 1"}},
        {"name": "lint", "dependsOn": ["checkout"], "script": {"source": "echo ruff ok"}},
        {"name": "unit-tests", "dependsOn": ["checkout"],
         "script": {"source": "for i in $(seq 1 8); do echo test_$i passed; sleep 0.2; done"}},
        {"name": "build", "dependsOn": ["checkout"], "script": {"source": "sleep 1; echo built"}},
        {"name": "integration", "dependsOn": ["unit-tests", "build"], "script": {
            "source": "for i in $(seq 1 60); do echo \"scenario $i: ok\"; sleep 1; done"}},
        {"name": "docs", "dependsOn": ["build"], "log": {"message": "docs built"}},
        {"name": "publish", "dependsOn": ["integration", "lint", "docs"],
         "log": {"message": "published {{ params.version }}"}},
    ],
    "finally": [{"name": "notify", "log": {"message": "release finished"}}],
})
FLAKY = workflow("nightly-report", {
    "triggers": {"schedule": {"cron": "0 3 * * *", "timezone": "Europe/Berlin"}},
    "steps": [
        {"name": "query", "log": {"message": "querying"}},
        {"name": "upload", "dependsOn": ["query"],
         "retry": {"limit": 1, "backoff": {"type": "fixed", "delay": "1s"}},
         "script": {"source": "echo 'upload failed: 503 from storage' >&2; exit 3"}},
    ],
})
HELLO = workflow("hello", {
    "params": [{"name": "who", "default": "world"}],
    "steps": [{"name": "greet", "log": {"message": "hello {{ params.who }}"}}],
})
SLEEPY = workflow("sync-inventory", {"steps": [
    {"name": "pull", "script": {"source": "sleep 300"}},
    {"name": "push", "dependsOn": ["pull"], "log": {"message": "pushed"}},
]})


def wait(driver: WebDriver, until: object, timeout: float = 30) -> object:
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(until)  # type: ignore


def wait_phase(stage: Stage, name: str, phases: set[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while (stage.get_run(name).get("status") or {}).get("phase") not in phases:
        if time.monotonic() > deadline:
            raise SystemExit(f"run {name} not in {phases} after {timeout}s")
        time.sleep(0.3)


def shoot(driver: WebDriver, name: str) -> None:
    time.sleep(0.4)  # let the last SSE update paint
    path = OUT / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"{path.relative_to(ROOT)}: {path.stat().st_size // 1024} KiB")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    workdir = Path(os.environ.get("TASKFORGE_UI_SHOTS_DIR", ROOT / ".local" / "ui-shots"))
    with Stage(workdir, namespace=NS) as stage:
        stage.apply(PIPELINE, FLAKY, HELLO, SLEEPY)
        stage.create(run("hello-1", "hello"), run("hello-2", "hello", {"who": "team"}),
                     run("nightly-report-29418", "nightly-report"),
                     run("sync-inventory-1", "sync-inventory"))
        wait_phase(stage, "nightly-report-29418", {"Failed"})
        stage.kubectl("patch", "workflowrun", "sync-inventory-1", "-n", NS, "--type=merge",
                      "-p", '{"spec": {"cancel": true}}')
        stage.create(run("release-1-4-0", "release", {"version": "1.4.0"}),
                     run("sync-inventory-2", "sync-inventory"))
        driver = chromium()
        try:
            stage.login(driver)
            base = f"{stage.url}/namespaces/{NS}"
            # the release is part way: checkout, lint, build done; integration running
            wait_phase(stage, "release-1-4-0", {"Running"})
            driver.get(f"{base}/runs/release-1-4-0")
            wait(driver, lambda d: d.find_elements(
                By.CSS_SELECTOR, '#graph .node[data-step=integration][data-phase=Running]'), 60)
            driver.find_element(By.CSS_SELECTOR, 'button[data-logs="integration"]').click()
            wait(driver, lambda d: "scenario 3" in d.find_element(By.ID, "logs").text)
            driver.execute_script("window.scrollTo(0, 0)")
            shoot(driver, "run")
            driver.execute_script(
                "document.getElementById('logs-section').scrollIntoView({block: 'end'})")
            shoot(driver, "run-logs")
            driver.get(f"{base}/runs")
            wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#runs tr[data-run]"))
            shoot(driver, "runs")
            driver.get(f"{base}/workflows")
            wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR,
                                                   "#workflows tr[data-workflow]"))
            shoot(driver, "workflows")
            driver.get(f"{base}/workflows/release")
            wait(driver, lambda d: d.find_element(By.ID, "param-version"))
            driver.find_element(By.ID, "run-submit").click()
            wait(driver, lambda d: d.find_element(By.ID, "run-error").is_displayed())
            shoot(driver, "run-form")
            driver.get(f"{base}/runs/nightly-report-29418")
            wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#events tbody tr"))
            shoot(driver, "run-failed")
            driver.get(f"{base}/deadletters")
            wait(driver, lambda d: not d.find_elements(
                By.XPATH, "//td[contains(., 'Loading')]"))
            shoot(driver, "deadletters")
        finally:
            driver.quit()


if __name__ == "__main__":
    sys.exit(main())
