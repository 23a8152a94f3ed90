"""The chart's UI server (ui.enabled): what it renders, and that the ClusterRole it gives the
server is enough: the real server runs with that ServiceAccount's token as its identity and
serves every read, review and live stream."""

from __future__ import annotations

import asyncio
import copy
import functools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from localcluster.testing import ClusterUnderTest

from tests.e2e.helm_kit import by_kind, container_env, helm_binary, render, to_yaml
from tests.e2e.operator.conftest import Kube
from tests.e2e.web.conftest import Api, Users, WebServer

pytestmark = pytest.mark.local_agent


def _ui(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in by_kind(manifests, kind)
            if m["metadata"]["labels"].get("app.kubernetes.io/component") == "ui"]


@functools.cache
def rendered() -> list[dict[str, Any]]:
    """One render for the module (helm template takes seconds on a loaded machine)."""
    return render(helm_binary(), "--set", "ui.enabled=true", "--set", "ui.ingress.enabled=true",
                  "--set", "ui.ingress.host=ui.example.com", "--set", "redis.url=redis://r:6379/0",
                  "--set", "ui.cookieSecure=true")


def test_chart_renders_the_ui_server() -> None:
    out = copy.deepcopy(rendered())
    (deployment,) = _ui(out, "Deployment")
    (service,) = _ui(out, "Service")
    (ingress,) = _ui(out, "Ingress")
    (role,) = _ui(out, "ClusterRole")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["taskforge-ui"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["serviceAccountName"] == "taskforge-ui"
    env = container_env(deployment)
    assert env["TASKFORGE_UI_COOKIE_SECURE"] == "true" and env["TASKFORGE_UI_PORT"] == "8080"
    assert env["REDIS_URL"]["secretKeyRef"]["key"]
    # the operator's Deployment and Service must not select the UI's pods, nor the reverse
    operator = next(d for d in by_kind(out, "Deployment") if d not in _ui(out, "Deployment"))
    op_selector = operator["spec"]["selector"]["matchLabels"]
    ui_labels = pod["metadata"]["labels"]
    assert not all(ui_labels.get(k) == v for k, v in op_selector.items())
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert [p["name"] for p in service["spec"]["ports"]] == ["http"]
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "ui.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == "taskforge-ui"
    # reads and reviews only: every change is made with the caller's own token
    verbs = {v for r in role["rules"] for v in r["verbs"]}
    assert verbs == {"create", "get", "list", "watch"}
    creates = {res for r in role["rules"] if "create" in r["verbs"] for res in r["resources"]}
    assert creates == {"tokenreviews", "subjectaccessreviews"}
    (proxy,) = [r for r in by_kind(out, "Role") if r["metadata"]["name"] == "taskforge-ui-proxy"]
    assert proxy["rules"][0]["resourceNames"] == ["taskforge-ui", "taskforge-ui:http"]


@pytest.fixture
def chart_web(cluster: ClusterUnderTest, web_crds: None, redis_server: Any, namespace: str,
              tmp_path: Path) -> Iterator[WebServer]:
    """The server with the chart's own ServiceAccount and ClusterRole as its identity."""
    name = f"ui-{uuid.uuid4().hex[:6]}"  # the rendered objects, renamed into this namespace
    objects = [copy.deepcopy(m) for m in rendered()
               if m["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")
               and m["metadata"]["name"] == "taskforge-ui"]
    for m in objects:
        m["metadata"]["name"] = name
        if m["kind"] == "ServiceAccount":
            m["metadata"]["namespace"] = namespace
        if m["kind"] == "ClusterRoleBinding":
            m["roleRef"]["name"] = name
            m["subjects"][0].update(name=name, namespace=namespace)
    assert len(objects) == 3
    cluster.kubectl("apply", "-f", "-", input=to_yaml(objects))
    try:
        sa = name
        token = cluster.kubectl("create", "token", sa, "-n", namespace).stdout.strip()
        config = yaml.safe_load(cluster.kubeconfig.read_text())
        context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
        config["users"] = [{"name": "ui", "user": {"token": token}}]
        config["contexts"] = [{"name": "ui", "context": {
            "cluster": context["context"]["cluster"], "user": "ui"}}]
        config["current-context"] = "ui"
        kubeconfig = tmp_path / "ui.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(config))
        server = WebServer(kubeconfig, redis_server.url, tmp_path / "web.log")
        try:
            yield server
        finally:
            server.stop()
    finally:
        cluster.kubectl("delete", "clusterrole,clusterrolebinding", name, "--ignore-not-found",
                        check=False)


def test_the_charts_rbac_is_enough_for_the_server(chart_web: WebServer, users: Users,
                                                   kube: Kube) -> None:
    kube.workflow("hello", {"steps": [{"name": "s", "script": {"source": "echo hi"}}]})
    run = kube.start_run("hello")
    kube.wait_run(run)
    viewer, editor = Api(chart_web, users.viewer, users.namespace), Api(
        chart_web, users.editor, users.namespace)
    assert viewer("GET", "/api/v1/whoami").status_code == 200  # TokenReview
    assert viewer("GET", "permissions").json()["runs"]["list"] is True  # SAR
    for path in ("workflows", "runs", f"runs/{run}", f"runs/{run}/events",
                 f"runs/{run}/steps/s/logs", "deadletters"):
        answer = viewer("GET", path)
        assert answer.status_code == 200, (path, answer.text)
    assert "hi" in viewer("GET", f"runs/{run}/steps/s/logs").text
    started = editor("POST", "runs", json={"workflow": "hello"})  # the editor's own token
    assert started.status_code == 201, started.text

    async def live() -> str:
        url = f"{chart_web.url}/api/v1/namespaces/{users.namespace}/live/runs"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {users.viewer}"}
                                         ) as session, session.get(url) as response:
            assert response.status == 200
            return (await response.content.readline()).decode()
    assert asyncio.run(asyncio.wait_for(live(), 20)).startswith("event: snapshot")
    assert chart_web.metric("taskforge_ui_kube_watches", 'kind="workflowruns"') == 1.0
