"""The web UI in a real browser (headless Debian chromium), against the real cluster,
operator and web server: live lists, the run graph turning green without a reload, logs
streaming, cancel, RBAC-hidden buttons with a 403 behind them, and the run form's errors.

The tests share one browser and one namespace, and run in file order (the viewer's test
uses the runs the editor's made).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.e2e.browser.conftest import Browser, Team, WebServer
from tests.e2e.cli_kit import CLI

WORKFLOWS: dict[str, dict[str, Any]] = {
    "quick": {"steps": [
        {"name": "fetch", "script": {"source": "echo fetching; sleep 1"}},
        {"name": "left", "dependsOn": ["fetch"], "log": {"message": "left side"}},
        {"name": "right", "dependsOn": ["fetch"], "script": {"source": "sleep 0.5; echo right"}},
        {"name": "join", "dependsOn": ["left", "right"], "log": {"message": "joined"}},
    ]},
    "talky": {"steps": [
        {"name": "talk", "script": {
            "source": "for i in 1 2 3 4 5 6 7 8; do echo \"line-$i\"; sleep 0.7; done"}},
    ]},
    "sleepy": {"steps": [{"name": "nap", "script": {"source": "sleep 120"}}]},
    "needs-param": {
        "params": [{"name": "target", "required": True, "description": "where to go"},
                   {"name": "count", "type": "integer", "default": 1}],
        "steps": [{"name": "go", "log": {"message": "to {{ params.target }}"}}],
    },
}


@pytest.fixture(scope="module")
def ui(team: Team, browser: Browser) -> Browser:
    for name, spec in WORKFLOWS.items():
        team.kube.workflow(name, spec)
    browser.login(team.tokens["editor"], f"/namespaces/{team.namespace}/runs")
    return browser


def kubectl_run(team: Team, workflow: str) -> str:
    name = f"{workflow}-{uuid.uuid4().hex[:5]}"
    team.cluster.kubectl("create", "-f", "-", input=f"""
apiVersion: taskforge.io/v1alpha1
kind: WorkflowRun
metadata: {{name: {name}, namespace: {team.namespace}}}
spec: {{workflowRef: {{name: {workflow}}}}}
""")
    return name


def run_page(ui: Browser, team: Team, run: str) -> None:
    ui.open(f"/namespaces/{team.namespace}/runs/{run}")
    ui.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#graph svg .node"), 10)


def node_phases(ui: Browser) -> dict[str, str]:
    found: dict[str, str] = ui.js(
        "return Object.fromEntries([...document.querySelectorAll('#graph .node')]"
        ".map(n => [n.dataset.step, n.dataset.phase || 'Pending']))")
    return found


def test_run_created_with_kubectl_appears_within_a_second(ui: Browser, team: Team) -> None:
    ui.open(f"/namespaces/{team.namespace}/runs")
    opened = time.monotonic()
    ui.wait(lambda d: d.find_element(By.ID, "runs-count").text, 30)  # the snapshot arrived
    print(f"runs list snapshot {time.monotonic() - opened:.2f} s after navigation")
    # The page notes when each row first appears (Date.now(), the same clock as time.time()
    # here), so WebDriver's polling round trips under load do not count.
    ui.js("""window.__appeared = {};
      new MutationObserver(() => {
        for (const r of document.querySelectorAll('#runs tr[data-run]'))
          window.__appeared[r.dataset.run] ??= Date.now();
      }).observe(document.querySelector('#runs tbody'), {childList: true});""")
    name = kubectl_run(team, "quick")
    created = time.time()
    appeared = ui.wait(lambda d: ui.js("return window.__appeared[arguments[0]]", name), 5)
    took = appeared / 1000 - created
    print(f"run row appeared {took * 1000:.0f} ms after kubectl create returned")
    assert took < 1.0, f"the run's row appeared {took:.3f} s after it was created"
    # its phase and progress follow live, without a reload
    ui.js("window.__sameDocument = true")
    row = f'#runs tr[data-run="{name}"]'
    # (rows are redrawn on each update: read them in the page, not through stale handles)
    read = ("const r = document.querySelector(arguments[0]);"
            " return r && [r.dataset.phase, r.innerText]")
    ui.wait(lambda d: (ui.js(read, row) or [""])[0] == "Succeeded", 30)
    assert "4/4" in ui.js(read, row)[1]
    assert ui.js("return window.__sameDocument") is True
    # the phase filter hides it once it is not among the checked phases
    ui.driver.find_element(By.CSS_SELECTOR, "#phase-filter input[value=Failed]").click()
    ui.wait(lambda d: not d.find_elements(By.CSS_SELECTOR, f'#runs tr[data-run="{name}"]'))
    assert "phase=Failed" in ui.driver.current_url


def test_steps_turn_green_live_without_a_reload(ui: Browser, team: Team) -> None:
    name = kubectl_run(team, "quick")
    run_page(ui, team, name)
    ui.js("window.__sameDocument = true")
    first = node_phases(ui)
    assert set(first) == {"fetch", "left", "right", "join"}
    assert first["join"] != "Succeeded"  # fetch alone sleeps 1 s
    ui.wait(lambda d: set(node_phases(ui).values()) == {"Succeeded"}, 30)
    assert ui.js("return window.__sameDocument") is True  # updated in place, never reloaded
    stroke = ui.js("return getComputedStyle(document.querySelector("
                   "'#graph .node[data-step=join] rect')).stroke")
    assert stroke == "rgb(26, 127, 55)"  # --succeeded: green
    assert ui.driver.find_element(By.ID, "run-phase").text == "Succeeded"
    rows = ui.driver.find_elements(By.CSS_SELECTOR, "#steps tbody tr")
    assert [r.get_attribute("data-phase") for r in rows] == ["Succeeded"] * 4
    # the table shows durations and the log step's outputs
    assert ui.driver.find_element(By.CSS_SELECTOR, "#step-fetch td:nth-of-type(4)").text


def test_logs_stream_while_the_step_runs(ui: Browser, team: Team) -> None:
    name = kubectl_run(team, "talky")
    run_page(ui, team, name)
    ui.wait(lambda d: node_phases(ui).get("talk") == "Running", 20)
    ui.driver.find_element(By.CSS_SELECTOR, 'button[data-logs="talk"]').click()
    logs = ui.driver.find_element(By.ID, "logs")
    ui.wait(lambda d: "line-1" in logs.text, 10)
    early = logs.text
    still_running = team.kube.run(name)["status"]["phase"] == "Running"
    assert still_running and "line-8" not in early, early
    ui.wait(lambda d: "line-8" in logs.text, 20)
    assert logs.get_attribute("data-state") in ("streaming", "done")


def test_cancel_from_the_ui_cancels_the_run(ui: Browser, team: Team) -> None:
    name = kubectl_run(team, "sleepy")
    run_page(ui, team, name)
    ui.wait(lambda d: node_phases(ui).get("nap") == "Running", 20)
    cancel = ui.wait(lambda d: d.find_element(By.ID, "btn-cancel").is_displayed()
                     and d.find_element(By.ID, "btn-cancel"))
    assert not ui.driver.find_element(By.ID, "btn-retry").is_displayed()
    ui.js("window.__sameDocument = true")
    cancel.click()
    run = team.kube.wait_run(name, timeout=30)
    assert run["status"]["phase"] == "Cancelled"
    ui.wait(lambda d: d.find_element(By.ID, "run-phase").text == "Cancelled", 10)
    retry = ui.wait(lambda d: d.find_element(By.ID, "btn-retry").is_displayed()
                    and d.find_element(By.ID, "btn-retry"))
    assert not ui.driver.find_element(By.ID, "btn-cancel").is_displayed()
    # the run's Events are on its page and arrive live: the operator's RunCancelled, posted
    # after the page loaded, shows with no Refresh and no reload
    reasons = ("return [...document.querySelectorAll('#events tbody tr td:nth-of-type(3)')]"
               ".map(td => td.textContent)")
    ui.wait(lambda d: "RunCancelled" in ui.js(reasons), 10)
    assert ui.js("return window.__sameDocument") is True
    # retry makes a new run and opens its page
    retry.click()
    ui.wait(lambda d: not d.current_url.endswith(f"/runs/{name}"), 10)
    retried = ui.driver.current_url.rsplit("/", 1)[1]
    assert retried != name and team.kube.run(retried)["spec"]["workflowRef"]["name"] == "sleepy"


def test_a_run_gone_from_the_cluster_points_to_the_archive(ui: Browser, team: Team) -> None:
    """A run page whose run is not in the cluster (never was, or deleted while watched) says
    so and links the run's archived page, instead of retrying its stream forever."""
    archived = f"/namespaces/{team.namespace}/archive/no-such-run"
    ui.open(f"/namespaces/{team.namespace}/runs/no-such-run")
    link = ui.wait(lambda d: d.find_elements(By.ID, "archive-link"), 10)[0]
    assert link.get_attribute("href").endswith(archived)
    assert "not in the cluster" in ui.driver.find_element(By.ID, "flash").text
    assert "interrupted" not in ui.driver.find_element(By.ID, "flash").text
    name = kubectl_run(team, "sleepy")
    run_page(ui, team, name)
    team.cluster.kubectl("delete", "workflowrun", name, "-n", team.namespace, "--wait=false")
    link = ui.wait(lambda d: d.find_elements(By.ID, "archive-link"), 20)[0]
    assert link.get_attribute("href").endswith(f"/namespaces/{team.namespace}/archive/{name}")
    assert "deleted" in ui.driver.find_element(By.ID, "flash").text


def test_run_form_names_a_missing_required_param(ui: Browser, team: Team) -> None:
    ui.open(f"/namespaces/{team.namespace}/workflows/needs-param")
    ui.wait(lambda d: d.find_element(By.ID, "run-section").is_displayed())
    target = ui.wait(lambda d: d.find_element(By.ID, "param-target"))
    # by keyboard: Tab from the form's first field lands on the next one, Enter submits
    target.click()
    ui.driver.switch_to.active_element.send_keys(Keys.TAB)
    assert ui.driver.switch_to.active_element.get_attribute("id") == "param-count"
    outline = ui.js("return getComputedStyle(document.activeElement).outlineWidth")
    assert outline == "3px"  # the focus ring is visible
    ui.driver.switch_to.active_element.send_keys(Keys.ENTER)
    error = ui.wait(lambda d: d.find_element(By.ID, "run-error").is_displayed()
                    and d.find_element(By.ID, "run-error"))
    assert "target" in error.text and "required" in error.text, error.text
    assert target.get_attribute("aria-invalid") == "true"
    assert ui.driver.switch_to.active_element == target  # the keyboard lands on it
    runs = team.kube.custom.list_namespaced_custom_object(
        "taskforge.io", "v1alpha1", team.namespace, "workflowruns",
        label_selector="taskforge.io/workflow=needs-param")["items"]
    assert runs == []
    target.send_keys("mars")
    ui.driver.find_element(By.ID, "run-submit").click()
    ui.wait(lambda d: "/runs/needs-param" in d.current_url, 10)
    ui.wait(lambda d: d.find_element(By.ID, "run-phase").text == "Succeeded", 30)


def test_a_viewer_sees_no_action_buttons_and_gets_403(
    ui: Browser, team: Team, web_server: WebServer
) -> None:
    running = kubectl_run(team, "sleepy")
    team.kube.wait_run(running, lambda r: (r.get("status") or {}).get("phase") == "Running", 20)
    ui.login(team.tokens["viewer"], f"/namespaces/{team.namespace}/runs/{running}")
    ui.wait(lambda d: d.find_element(By.ID, "run-phase").text == "Running", 10)
    ui.wait(lambda d: d.find_element(By.ID, "btn-cancel").get_attribute("data-allowed"))
    assert ui.driver.find_element(By.ID, "btn-cancel").get_attribute("data-allowed") == "false"
    assert not ui.driver.find_element(By.ID, "btn-cancel").is_displayed()
    assert not ui.driver.find_element(By.ID, "btn-retry").is_displayed()
    ui.open(f"/namespaces/{team.namespace}/workflows")
    ui.wait(lambda d: d.find_elements(By.CSS_SELECTOR, '#workflows tr[data-workflow="quick"]'))
    assert not [a for a in ui.driver.find_elements(By.CSS_SELECTOR, "#workflows a.button")
                if a.is_displayed()]
    ui.open(f"/namespaces/{team.namespace}/workflows/needs-param")
    ui.wait(lambda d: d.find_element(By.ID, "run-section").get_attribute("data-allowed"))
    assert not ui.driver.find_element(By.ID, "run-section").is_displayed()
    # the server checks again: the viewer's own token gets 403 and nothing changes
    api = f"{web_server.url}/api/v1/namespaces/{team.namespace}"
    bearer = {"Authorization": f"Bearer {team.tokens['viewer']}"}
    cancel = httpx.post(f"{api}/runs/{running}/cancel", headers=bearer, timeout=10)
    start = httpx.post(f"{api}/runs", headers=bearer, timeout=10,
                       json={"workflow": "needs-param", "params": {"target": "x"}})
    assert (cancel.status_code, start.status_code) == (403, 403), (cancel.text, start.text)
    assert cancel.json()["error"]["reason"] == "Forbidden"
    assert not team.kube.run(running)["spec"].get("cancel")
    # nobody logged in: pages send to the login page, the graph endpoint answers 401
    page = httpx.get(f"{web_server.url}/namespaces/{team.namespace}/runs", timeout=10)
    assert page.status_code == 302 and page.headers["Location"].startswith("/login?next=")
    graph = httpx.post(f"{web_server.url}/ui/graph", json={"steps": ["a"]}, timeout=10)
    assert graph.status_code == 401


def test_taskforge_ui_local_mode_pages(ui: Browser, team: Team) -> None:
    """`taskforge ui`: the printed URL logs the browser in as the kubeconfig's user (here the
    cluster admin, so the buttons show), and the pages work as in the cluster mode."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    proc = subprocess.Popen([str(CLI), "--kubeconfig", str(team.cluster.kubeconfig), "ui",
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)
    try:
        assert proc.stdout is not None
        line = next((x for x in proc.stdout if "/api/v1/login?token=" in x), "")
        found = re.search(r"(http://127\.0\.0\.1:\d+/api/v1/login\?token=\S+)&next=/", line)
        assert found, line
        running = kubectl_run(team, "sleepy")
        ui.driver.delete_all_cookies()
        ui.driver.get(found.group(1) + "&next=" + quote(
            f"/namespaces/{team.namespace}/runs/{running}", safe=""))
        ui.wait(lambda d: d.find_element(By.CSS_SELECTOR, "body").get_attribute("data-mode")
                == "local", 10)
        ui.wait(lambda d: d.find_element(By.ID, "btn-cancel").is_displayed(), 20)
        # the graph came from this server's /ui/graph (drawn after the buttons: wait for it)
        ui.wait(lambda d: node_phases(ui), 10)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
