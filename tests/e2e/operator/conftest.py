"""Fixtures for end-to-end tests of the operator: CRDs installed, the real operator running.

The operator runs as a local process against the cluster under test (the local
control plane, or any cluster named by TASKFORGE_E2E_KUBECONFIG), exactly as
`make run` starts it, so these tests exercise the shipped code paths.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import yaml
from kubernetes import client
from localcluster.admission import wait_for_admission_webhook

ROOT = Path(__file__).resolve().parents[3]
GROUP, VERSION = "taskforge.io", "v1alpha1"
EXECUTOR_IMAGE = os.environ.get("TASKFORGE_E2E_EXECUTOR_IMAGE", "taskforge-executor:dev")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OperatorProcess:
    """The real `taskforge-operator`, startable, killable (SIGKILL) and restartable."""

    def __init__(self, kubeconfig: Path, redis_url: str | None, log_dir: Path) -> None:
        self.kubeconfig = kubeconfig
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.http_port = _free_port()  # /metrics, /healthz, /readyz and /hooks
        self.admission_port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        # Like a pod's name across container restarts: a restarted process takes the leader
        # Lease back at once instead of waiting out the term of its killed predecessor.
        self.identity = f"e2e-operator-{uuid.uuid4().hex[:8]}"
        self.extra_env: dict[str, str] = {}

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"operator-{self.starts}.log"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KUBECONFIG=str(self.kubeconfig),
            TASKFORGE_EXECUTOR_IMAGE=EXECUTOR_IMAGE,
            TASKFORGE_IMAGE_PULL_POLICY=os.environ.get("TASKFORGE_E2E_PULL_POLICY", "IfNotPresent"),
            TASKFORGE_HTTP_PORT=str(self.http_port),
            TASKFORGE_ADMISSION="local",
            TASKFORGE_ADMISSION_PORT=str(self.admission_port),
            # One certificate across restarts: the webhook configuration keeps trusting it.
            TASKFORGE_ADMISSION_CERT_DIR=str(self.log_dir / "admission-tls"),
            TASKFORGE_LOG_LEVEL="INFO",
            # Short leases so the kill -9 test sees a lost slot come back within seconds.
            TASKFORGE_SLOT_TTL_SECONDS="4",
            TASKFORGE_LEASE_IDENTITY=self.identity,
        )
        env.update(self.extra_env)
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        return env

    def start(self) -> None:
        self.starts += 1
        out = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "taskforge.handlers.main"],
            env=self.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited early:\n{self.log_path.read_text()[-4000:]}")
            try:
                if self._admission_listening():
                    wait_for_admission_webhook(self.kubeconfig, self.admission_port)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"operator not healthy in 60s:\n{self.log_path.read_text()[-4000:]}")

    def _admission_listening(self) -> bool:
        """/readyz's admission check, whatever the others say (some tests start the operator
        with Redis down). On a restart the webhook configuration already names this port, so
        only this tells that creates will not be refused with "connection refused"."""
        answer = httpx.get(f"http://127.0.0.1:{self.http_port}/readyz", timeout=1)
        return bool(answer.json().get("checks", {}).get("admission"))

    def kill(self) -> None:
        """SIGKILL, as a crash would: no cleanup handlers run."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    @contextmanager
    def restarted_with(self, env: dict[str, str]) -> Iterator[OperatorProcess]:
        """This operator restarted with `env` added, and restarted as it was afterwards."""
        self.stop()
        self.extra_env = env
        self.start()
        try:
            yield self
        finally:
            self.stop()
            self.extra_env = {}
            self.start()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))


@pytest.fixture(scope="session")
def crds(cluster: Any) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    deadline = time.monotonic() + 60
    while True:  # `kubectl wait` errors while a fresh CRD has no status yet
        result = cluster.kubectl("wait", "--for", "condition=established", "--timeout=30s",
                                 "crd/workflows.taskforge.io", "crd/workflowruns.taskforge.io",
                                 check=time.monotonic() > deadline)
        if result.returncode == 0:
            return
        time.sleep(0.5)


@pytest.fixture(scope="package")
def operator(
    cluster: Any, crds: None, redis_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    # Package scope: the operator stops when these tests end, so other e2e tests (the CLI's,
    # which write run status themselves) never race a real operator.
    proc = OperatorProcess(cluster.kubeconfig, redis_server.url,
                           tmp_path_factory.mktemp("operator"))
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def running_operator(operator: OperatorProcess) -> OperatorProcess:
    """The session operator, started again if an earlier test killed it."""
    if operator.proc is None or operator.proc.poll() is not None:
        operator.start()
    return operator


class Kube:
    """Small helpers over the API for one test namespace."""

    def __init__(self, api: client.ApiClient, namespace: str, kubeconfig: Path) -> None:
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self.custom = client.CustomObjectsApi(api)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)

    def apply(self, manifest: dict[str, Any] | str) -> dict[str, Any]:
        body = yaml.safe_load(manifest) if isinstance(manifest, str) else manifest
        plural = {"Workflow": "workflows", "WorkflowRun": "workflowruns"}[body["kind"]]
        body.setdefault("metadata", {})["namespace"] = self.namespace
        created = cast(dict[str, Any], self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, body
        ))
        return created

    def workflow(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self.apply({"apiVersion": f"{GROUP}/{VERSION}", "kind": "Workflow",
                           "metadata": {"name": name}, "spec": spec})

    def start_run(self, workflow: str, params: dict[str, Any] | None = None,
                  name: str | None = None) -> str:
        run_name = name or f"{workflow}-{uuid.uuid4().hex[:6]}"
        spec: dict[str, Any] = {"workflowRef": {"name": workflow}}
        if params:
            spec["params"] = params
        self.apply({"apiVersion": f"{GROUP}/{VERSION}", "kind": "WorkflowRun",
                    "metadata": {"name": run_name}, "spec": spec})
        return run_name

    def run(self, name: str) -> dict[str, Any]:
        body = cast(dict[str, Any], self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "workflowruns", name
        ))
        return body

    def get_workflow(self, name: str) -> dict[str, Any]:
        body = cast(dict[str, Any], self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "workflows", name
        ))
        return body

    def patch_run(self, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "workflowruns", name, patch
        )

    def wait_run(self, name: str, until: Callable[[dict[str, Any]], bool] | None = None,
                 timeout: float = 90) -> dict[str, Any]:
        """Poll until `until(run)` (default: a terminal phase); fail with the last status."""
        check = until or (lambda r: (r.get("status") or {}).get("phase")
                          in ("Succeeded", "Failed", "Cancelled"))
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = self.run(name)
            if check(body):
                return body
            time.sleep(0.2)
        raise AssertionError(
            f"run {name} did not reach the expected state in {timeout}s; status:\n"
            + json.dumps(body.get("status"), indent=1)[:6000]
        )

    def jobs(self, run: str) -> list[Any]:
        items: list[Any] = self.batch.list_namespaced_job(
            self.namespace, label_selector=f"taskforge.io/run={run}"
        ).items
        return items

    def event_reasons(self, name: str, expect: set[str], timeout: float = 10) -> set[str]:
        """Reasons of the Events on an object, waiting a little for `expect` (posted async)."""
        deadline = time.monotonic() + timeout
        while True:
            reasons = {e.reason for e in self.events(name)}
            if expect <= reasons or time.monotonic() > deadline:
                return reasons
            time.sleep(0.2)

    def events(self, name: str) -> list[Any]:
        items: list[Any] = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        ).items
        return items


@pytest.fixture
def kube(cluster: Any, namespace: str, running_operator: OperatorProcess) -> Kube:
    return Kube(cluster.api_client(), namespace, cluster.kubeconfig)


def step_phases(run: dict[str, Any]) -> dict[str, str]:
    steps = (run.get("status") or {}).get("steps") or {}
    return {name: s.get("phase") for name, s in steps.items()}
