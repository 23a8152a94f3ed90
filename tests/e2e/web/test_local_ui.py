"""`taskforge ui`: the same server on 127.0.0.1 acting as the kubeconfig's user, reachable
only with the secret it prints."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import httpx
import pytest
from localcluster.testing import ClusterUnderTest

from tests.e2e.cli_kit import CLI

pytestmark = pytest.mark.local_agent


def test_taskforge_ui_acts_as_the_kubeconfig_user(cluster: ClusterUnderTest, web_crds: None,
                                                  namespace: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "TASKFORGE_UI_TOKEN")}
    proc = subprocess.Popen([str(CLI), "--kubeconfig", str(cluster.kubeconfig), "ui",
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)
    try:
        assert proc.stdout is not None
        line = ""
        for line in proc.stdout:
            if "/api/v1/login?token=" in line:
                break
        found = re.search(r"(http://127\.0\.0\.1:\d+)/api/v1/login\?token=(\S+)&next=/", line)
        assert found, line
        base, secret = found.groups()
        outsider = httpx.Client(base_url=base, timeout=30)
        assert outsider.get("/api/v1/whoami").status_code == 401
        assert outsider.get("/api/v1/login", params={"token": "guess"}).status_code == 401
        assert outsider.get(f"/api/v1/namespaces/{namespace}/runs").status_code == 401

        browser = httpx.Client(base_url=base, timeout=30)
        login = browser.get("/api/v1/login", params={"token": secret, "next": "/"})
        assert login.status_code == 302 and login.headers["location"] == "/"
        me = browser.get("/api/v1/whoami").json()
        assert me["mode"] == "local" and me["user"]["name"], me
        allowed = browser.get(f"/api/v1/namespaces/{namespace}/permissions").json()
        assert allowed["runs"]["create"] and allowed["deadletters"]["purge"]  # the admin's
        assert browser.get(f"/api/v1/namespaces/{namespace}/runs").json()["items"] == []
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input="""
apiVersion: taskforge.io/v1alpha1
kind: Workflow
metadata: {name: hello}
spec: {steps: [{name: s, log: {message: hi}}]}
""")
        started = browser.post(f"/api/v1/namespaces/{namespace}/runs",
                               json={"workflow": "hello"},
                               headers={"X-Taskforge-Request": "1"})
        assert started.status_code == 201, started.text
        assert cluster.kubectl("get", "workflowruns.taskforge.io", started.json()["name"],
                               "-n", namespace).returncode == 0
        no_redis = browser.get(f"/api/v1/namespaces/{namespace}/deadletters")
        assert no_redis.status_code == 503 and "REDIS_URL" in no_redis.json()["error"]["message"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
