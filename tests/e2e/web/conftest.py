"""Fixtures of the web API tests: the real server (`python -m taskforge.web`) as a process
against the session's control plane and Redis, the real operator, and users.

Users are ServiceAccounts of the test's namespace with Roles, and their tokens come from
the TokenRequest API, so every request is authenticated by TokenReview and authorized by
SubjectAccessReview exactly as in a cluster. The server's own identity is the test
kubeconfig's (the chart gives it a narrow ServiceAccount; tests/e2e/test_helm_* render it).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client
from localcluster.testing import ClusterUnderTest
from localcluster.webserver import start_web_server, stop_web_server

from tests.e2e.cli_kit import install_crds
from tests.e2e.operator.conftest import Kube, OperatorProcess

VIEW_RULES = """
- apiGroups: [taskforge.io]
  resources: [workflows, workflowruns]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [pods, pods/log, events]
  verbs: [get, list, watch]
"""
EDIT_RULES = VIEW_RULES + """
- apiGroups: [taskforge.io]
  resources: [workflowruns]
  verbs: [create, patch, update, delete]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WebServer:
    def __init__(self, kubeconfig: Path, redis_url: str, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, KUBECONFIG=str(kubeconfig), REDIS_URL=redis_url,
                   TASKFORGE_UI_PORT=str(self.port), TASKFORGE_UI_HOST="0.0.0.0",
                   TASKFORGE_UI_VIEWER_QUEUE="64")
        self.log = log
        self.proc = start_web_server(env, self.url, log)

    def metric(self, name: str, labels: str = "") -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(name + (f"{{{labels}}}" if labels else "")):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self) -> None:
        stop_web_server(self.proc)


@pytest.fixture(scope="package")
def web_crds(cluster: ClusterUnderTest) -> None:
    install_crds(cluster)


@pytest.fixture(scope="package")
def web(cluster: ClusterUnderTest, web_crds: None, redis_server: Any,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    server = WebServer(cluster.kubeconfig, redis_server.url,
                       tmp_path_factory.mktemp("web") / "web.log")
    yield server
    server.stop()


@pytest.fixture(scope="package")
def web_operator(cluster: ClusterUnderTest, web_crds: None, redis_server: Any,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(cluster.kubeconfig, redis_server.url,
                           tmp_path_factory.mktemp("web-operator"))
    proc.start()
    yield proc
    proc.stop()


@dataclass
class Users:
    namespace: str
    viewer: str
    editor: str
    nobody: str


def _rbac(namespace: str, name: str, rules: str | None) -> str:
    doc = f"""
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {name}}}
"""
    if rules:
        doc += f"""
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: {name}}}
rules:{rules}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: {name}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {name}}}
subjects: [{{kind: ServiceAccount, name: {name}, namespace: {namespace}}}]
"""
    return doc


@pytest.fixture
def users(cluster: ClusterUnderTest, namespace: str) -> Users:
    """viewer (read), editor (read + create/patch/delete runs), nobody: ServiceAccounts of
    the test namespace (one apply), each with a token from the TokenRequest API."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input="".join(
        _rbac(namespace, name, rules) for name, rules in
        (("viewer", VIEW_RULES), ("editor", EDIT_RULES), ("nobody", None))))
    core = client.CoreV1Api(cluster.api_client())

    def token(name: str) -> str:
        answer = core.create_namespaced_service_account_token(
            name, namespace, {"spec": {"expirationSeconds": 3600}})
        return str(answer.status.token)

    return Users(namespace, token("viewer"), token("editor"), token("nobody"))


class Api:
    """The web API as one user (a bearer token), for one namespace."""

    def __init__(self, web: WebServer, token: str | None, namespace: str) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=web.url, headers=headers, timeout=30)
        self.ns = namespace

    def __call__(self, method: str, path: str, **kw: Any) -> httpx.Response:
        if not path.startswith("/"):
            path = f"/api/v1/namespaces/{self.ns}/{path}"
        return self.http.request(method, path, **kw)


@pytest.fixture
def kube(cluster: ClusterUnderTest, namespace: str, web_operator: OperatorProcess) -> Kube:
    return Kube(cluster.api_client(), namespace, cluster.kubeconfig)


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    err: dict[str, Any] = body["error"]
    assert err["status"] == response.status_code and err["message"], err
    return err
