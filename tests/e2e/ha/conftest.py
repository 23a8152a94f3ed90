"""Two or more real operator processes against the local control plane, as the Helm chart's
replicas would run: one Lease (a name of their own), one admission port shared through
SO_REUSEPORT (kopf binds it so; the API server's calls reach whichever replica is up, as a
Service would route them) with one certificate, and each its own HTTP port for /hooks and
/readyz. The chart's Deployment cannot run on the local node agent (it runs step images
only, without probes, Services or in-cluster credentials), so these tests start processes
and play the Deployment controller: start, wait for Ready, route, stop."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from tests.e2e.operator.conftest import Kube, OperatorProcess, crds  # noqa: F401 - a fixture


class Replicas:
    """The operator replicas of one test, and the Lease they share."""

    def __init__(self, cluster: Any, redis_url: str | None, log_dir: Path, namespace: str) -> None:
        self.cluster = cluster
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.namespace = namespace
        self.lease = f"ha-{uuid.uuid4().hex[:8]}"
        self.coordination = client.CoordinationV1Api(cluster.api_client())
        self.all: list[OperatorProcess] = []
        self.admission_port: int | None = None

    def start(self, name: str) -> OperatorProcess:
        proc = OperatorProcess(self.cluster.kubeconfig, self.redis_url, self.log_dir / name)
        proc.log_dir.mkdir(parents=True, exist_ok=True)
        proc.identity = name
        if self.admission_port is None:
            self.admission_port = proc.admission_port
        proc.admission_port = self.admission_port
        proc.extra_env = {
            "TASKFORGE_LEASE_NAME": self.lease,
            "TASKFORGE_LEASE_NAMESPACE": self.namespace,
            "TASKFORGE_ADMISSION_CERT_DIR": str(self.log_dir / "admission-tls"),
        }
        self.all.append(proc)
        proc.start()
        return proc

    def holder(self) -> str | None:
        try:
            lease = self.coordination.read_namespaced_lease(self.lease, self.namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return lease.spec.holder_identity if lease.spec else None

    def wait_holder(self, want: set[str], timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            holder = self.holder()
            if holder in want:
                return holder
            time.sleep(0.05)
        raise AssertionError(f"lease {self.lease}: held by {self.holder()}, not one of {want}")

    @staticmethod
    def wait_ready(proc: OperatorProcess, timeout: float = 60) -> float:
        """Seconds until /readyz answers 200 (the cache synced)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                if httpx.get(f"http://127.0.0.1:{proc.http_port}/readyz", timeout=2).is_success:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{proc.identity} not ready in {timeout}s:\n{proc.logs()[-3000:]}")

    def by_identity(self, identity: str) -> OperatorProcess:
        return next(p for p in self.all if p.identity == identity)

    def stop_all(self) -> None:
        for proc in self.all:
            proc.stop()


@pytest.fixture
def replicas(cluster: Any, crds: None, redis_server: Any, namespace: str,  # noqa: F811
             tmp_path: Path) -> Iterator[Replicas]:
    group = Replicas(cluster, redis_server.url, tmp_path, namespace)
    try:
        yield group
    finally:
        group.stop_all()


@pytest.fixture
def kube(cluster: Any, namespace: str) -> Kube:
    return Kube(cluster.api_client(), namespace, cluster.kubeconfig)
