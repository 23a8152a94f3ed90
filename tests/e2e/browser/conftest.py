"""Fixtures for the web UI's browser tests: the real operator, the real web server, users
with RBAC of their own, and one headless Debian chromium driven by Selenium.

Nothing is mocked: the server (`python -m taskforge.web`, as the chart runs it) reads the
cluster under test, authenticates ServiceAccount tokens with TokenReview and authorizes every
call with SubjectAccessReview. The browser is the distribution's `chromium` with its
`chromedriver` (apt, hack/setup.sh); Selenium is pointed at both, so it downloads nothing.
One browser serves the whole module (start-up is about a second); tests log in as they need.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from localcluster.webserver import start_web_server, stop_web_server
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.operator.conftest import (  # noqa: F401 (fixtures, registered by import)
    Kube,
    OperatorProcess,
    _free_port,
    crds,
    operator,
    running_operator,
)

CHROMIUM = os.environ.get("TASKFORGE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TASKFORGE_CHROMEDRIVER", "/usr/bin/chromedriver")

EDIT_RULES = """
- apiGroups: [taskforge.io]
  resources: [workflows, workflowruns]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [pods, pods/log, events]
  verbs: [get, list, watch]
"""
VIEW_RULES = """
- apiGroups: [taskforge.io]
  resources: [workflows, workflowruns]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [pods, pods/log, events]
  verbs: [get, list, watch]
"""


class WebServer:
    """The real `python -m taskforge.web` on a free loopback port."""

    def __init__(self, kubeconfig: Path, redis_url: str | None, log_dir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / "web.log"
        env = dict(os.environ, KUBECONFIG=str(kubeconfig), TASKFORGE_UI_HOST="127.0.0.1",
                   TASKFORGE_UI_PORT=str(self.port), TASKFORGE_LOG_LEVEL="INFO")
        if redis_url:
            env["REDIS_URL"] = redis_url
        self.proc = start_web_server(env, self.url, self.log_path)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_web_server(self.proc)


@pytest.fixture(scope="module")
def web_server(cluster: Any, crds: None, redis_server: Any,  # noqa: F811
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    server = WebServer(cluster.kubeconfig, redis_server.url, tmp_path_factory.mktemp("web"))
    yield server
    server.stop()


class Team:
    """A namespace with two users (ServiceAccount tokens): `editor` may run, cancel and
    retry; `viewer` may only read."""

    def __init__(self, cluster: Any, operator: OperatorProcess) -> None:  # noqa: F811
        self.cluster = cluster
        self.namespace = f"e2e-ui-{uuid.uuid4().hex[:6]}"
        cluster.kubectl("create", "namespace", self.namespace)
        self.tokens = {role: self._user(role, rules)
                       for role, rules in (("editor", EDIT_RULES), ("viewer", VIEW_RULES))}
        self.kube = Kube(cluster.api_client(), self.namespace, cluster.kubeconfig)

    def _user(self, role: str, rules: str) -> str:
        ns = self.namespace
        manifest = f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: ui-{role}, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: ui-{role}, namespace: {ns}}}
rules:{rules}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: ui-{role}, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: ui-{role}}}
subjects: [{{kind: ServiceAccount, name: ui-{role}, namespace: {ns}}}]
"""
        self.cluster.kubectl("apply", "-f", "-", input=manifest)
        return str(self.cluster.kubectl("create", "token", f"ui-{role}", "-n", ns,
                                        "--duration=1h").stdout.strip())

    def delete(self) -> None:
        self.cluster.kubectl("delete", "namespace", self.namespace, "--wait=false",
                             "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def team(cluster: Any, operator: OperatorProcess) -> Iterator[Team]:  # noqa: F811
    """The module's namespace and users; the operator is running (package fixture)."""
    found = Team(cluster, operator)
    yield found
    found.delete()


def chromium_driver(width: int = 1366, height: int = 900) -> WebDriver:
    """Debian's headless chromium through its chromedriver (never a downloaded browser)."""
    if not (Path(CHROMIUM).exists() and shutil.which(CHROMEDRIVER)):
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed: apt-get install chromium"
                    " chromium-driver (hack/setup.sh does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-extensions", "--no-first-run", f"--window-size={width},{height}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


class Browser:
    """One chromium for the module, with the few moves the tests make."""

    def __init__(self, driver: WebDriver, base: str) -> None:
        self.driver = driver
        self.base = base

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def login(self, token: str, then: str) -> None:
        self.driver.delete_all_cookies()
        self.open(f"/login?next={then}")
        self.driver.find_element(By.ID, "token").send_keys(token)
        self.driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
        self.wait(lambda d: d.current_url.endswith(then), 10)

    def wait(self, until: Any, timeout: float = 10, poll: float = 0.02) -> Any:
        return WebDriverWait(self.driver, timeout, poll_frequency=poll).until(until)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)


@pytest.fixture(scope="module")
def browser(web_server: WebServer) -> Iterator[Browser]:
    driver = chromium_driver()
    try:
        yield Browser(driver, web_server.url)
    finally:
        driver.quit()
