"""A whole Taskforge with its web UI on this machine, for hack/ui_screenshots.py and
bench/bench_ui.py: the local control plane and node agent, Redis, the CRDs, the real
operator, the real web server (`python -m taskforge.web`, as the chart runs it), a user with
edit rights in one namespace (a ServiceAccount token), and Debian's headless chromium.

The browser tests build the same from pytest fixtures (tests/e2e/browser/conftest.py);
this is the same wiring for scripts, which have no pytest session.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml
from demo import install_crds, kubectl, start_operator
from localcluster.cluster import LocalCluster
from localcluster.process import free_port
from localcluster.webserver import start_web_server
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = os.environ.get("TASKFORGE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TASKFORGE_CHROMEDRIVER", "/usr/bin/chromedriver")

EDITOR = """
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {user}, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: {user}, namespace: {ns}}}
rules:
- apiGroups: [taskforge.io]
  resources: [workflows, workflowruns]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [pods, pods/log, events]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: {user}, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {user}}}
subjects: [{{kind: ServiceAccount, name: {user}, namespace: {ns}}}]
"""


def chromium(width: int = 1366, height: int = 900) -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", "--no-first-run", f"--window-size={width},{height}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


class Stage:
    """Everything up in `workdir`; `with Stage(...) as s:` stops it all afterwards."""

    def __init__(self, workdir: Path, namespace: str = "default", user: str = "alice",
                 *, with_operator: bool = True) -> None:
        """`with_operator=False`: no operator (a benchmark that writes run status itself)."""
        self.workdir = workdir
        self.with_operator = with_operator
        self.namespace = namespace
        self.user = user
        self.cluster = LocalCluster(workdir / "cluster")
        self.operator: subprocess.Popen[bytes] | None = None
        self.web: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.token = ""

    def __enter__(self) -> Stage:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cluster.start()
        try:
            install_crds(self.cluster)
            if self.with_operator:
                self.operator = start_operator(self.cluster, self.workdir / "operator.log")
            self.web = self.start_web()
            if self.namespace != "default":
                self.kubectl("create", "namespace", self.namespace)
            self.wait_for_default_serviceaccount()
            self.kubectl_input(EDITOR.format(user=self.user, ns=self.namespace), "apply")
            self.token = self.kubectl("create", "token", self.user, "-n", self.namespace,
                                      "--duration=2h").strip()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def wait_for_default_serviceaccount(self) -> None:
        for _ in range(300):
            try:
                self.kubectl("get", "serviceaccount", "default", "-n", self.namespace)
                return
            except subprocess.CalledProcessError:
                time.sleep(0.1)

    def start_web(self) -> subprocess.Popen[bytes]:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = dict(os.environ, KUBECONFIG=str(self.cluster.kubeconfig),
                   TASKFORGE_UI_HOST="127.0.0.1", TASKFORGE_UI_PORT=str(port))
        if self.cluster.redis_url:
            env["REDIS_URL"] = self.cluster.redis_url
        try:
            return start_web_server(env, self.url, self.workdir / "web.log")
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from exc

    def kubectl(self, *args: str) -> str:
        return kubectl(self.cluster, *args)

    def kubectl_input(self, manifest: str, *args: str) -> str:
        argv = [str(self.cluster.kubectl_path()), "--kubeconfig", str(self.cluster.kubeconfig),
                *args, "-n", self.namespace, "-f", "-"]
        done = subprocess.run(argv, input=manifest, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def apply(self, *objects: dict[str, Any]) -> None:
        self.kubectl_input(yaml.safe_dump_all(objects), "apply")

    def create(self, *objects: dict[str, Any]) -> None:
        self.kubectl_input(yaml.safe_dump_all(objects), "create")

    def get_run(self, name: str) -> dict[str, Any]:
        out = self.kubectl("get", "workflowrun", name, "-n", self.namespace, "-o", "json")
        found: dict[str, Any] = yaml.safe_load(out)
        return found

    def login(self, driver: WebDriver) -> None:
        """The cookie that the login form sets, set directly (the browser tests use the form)."""
        driver.get(f"{self.url}/login")
        answer = httpx.post(f"{self.url}/api/v1/login", json={"token": self.token}, timeout=10)
        answer.raise_for_status()
        driver.add_cookie({"name": "taskforge_token", "value": self.token, "path": "/",
                           "httpOnly": True, "sameSite": "Strict"})

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for proc in (self.web, self.operator):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.cluster.stop()


def workflow(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "taskforge.io/v1alpha1", "kind": "Workflow",
            "metadata": {"name": name}, "spec": spec}


def run(name: str, workflow_name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"workflowRef": {"name": workflow_name}}
    if params:
        spec["params"] = params
    return {"apiVersion": "taskforge.io/v1alpha1", "kind": "WorkflowRun",
            "metadata": {"name": name}, "spec": spec}
