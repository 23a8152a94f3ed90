"""Shared helpers of the local cluster's own tests (test_local_cluster_kubernetes.py,
test_local_cluster_agent.py): plain Job manifests, and polling the cluster until a pod, a
Job condition or a host process is there (or gone).

Not a test module; no asserts here, a timeout is raised as an AssertionError naming what
was waited for.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client as k8s_client
from localcluster.testing import ClusterUnderTest

T = TypeVar("T")
PYTHON_IMAGE = "python:3.11-slim"
BUSYBOX_IMAGE = "busybox:1.36"


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def job(
    name: str,
    command: list[str],
    *,
    image: str = PYTHON_IMAGE,
    env: list[dict[str, Any]] | None = None,
    deadline: int | None = None,
) -> str:
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "template": {"spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "main", "image": image, "command": command,
                            "env": env or []}],
        }},
    }
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    return json.dumps({"apiVersion": "batch/v1", "kind": "Job",
                       "metadata": {"name": name}, "spec": spec})


def pod_of(cluster: ClusterUnderTest, namespace: str, job_name: str) -> k8s_client.V1Pod | None:
    core = k8s_client.CoreV1Api(cluster.api_client())
    pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={job_name}").items
    return pods[0] if pods else None


def job_condition(cluster: ClusterUnderTest, namespace: str, name: str, kind: str) -> Any:
    batch = k8s_client.BatchV1Api(cluster.api_client())
    status = batch.read_namespaced_job(name, namespace).status
    for cond in (status.conditions if status else None) or []:
        if cond.type == kind and cond.status == "True":
            return cond
    return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
