"""Shared helpers of the real-node tests (tests/e2e/node/): the built image's OCI config,
restricted namespaces, pods run to completion, and containerd's view of the node.

Not a test module. These tests run with ``--node=kubelet`` only (marker ``real_node``).
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from localcluster.realnode import default_image_dir
from localcluster.testing import ClusterUnderTest

IMAGE = "localhost/taskforge:dev"
PSS_LABELS = ("pod-security.kubernetes.io/enforce=restricted",
              "pod-security.kubernetes.io/warn=restricted")
RESTRICTED_CONTAINER: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def image_config(name: str = "taskforge") -> dict[str, Any]:
    """The OCI image config of an archive `make image` exported (index -> manifest -> config)."""
    archive = default_image_dir() / f"{name}.tar"
    with tarfile.open(archive) as tar:
        def blob(digest: str) -> dict[str, Any]:
            member = tar.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}")
            assert member is not None
            loaded: dict[str, Any] = json.load(member)
            return loaded

        index_file = tar.extractfile("index.json")
        assert index_file is not None
        index = json.load(index_file)
        manifest = blob(index["manifests"][0]["digest"])
        return blob(manifest["config"]["digest"])


def archive_size(name: str) -> int:
    return Path(default_image_dir() / f"{name}.tar").stat().st_size


@contextmanager
def restricted_namespace(cluster: ClusterUnderTest, prefix: str = "e2e-rn") -> Iterator[str]:
    """A fresh namespace that enforces the `restricted` Pod Security Standard."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, *PSS_LABELS)
    deadline = time.monotonic() + 30
    while cluster.kubectl("get", "serviceaccount", "default", "-n", name,
                          check=False).returncode:
        assert time.monotonic() < deadline, f"no default ServiceAccount in {name}"
        time.sleep(0.2)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found",
                        check=False)


def pod_manifest(name: str, image: str, command: list[str], *,
                 restart: str = "Never") -> dict[str, Any]:
    """A pod that passes `restricted`: the image's own non-root user, read-only root, /tmp."""
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "restartPolicy": restart,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 2,
            "securityContext": {"runAsNonRoot": True,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "main", "image": image, "imagePullPolicy": "Never",
                "command": command, "securityContext": RESTRICTED_CONTAINER,
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }


def run_pod(cluster: ClusterUnderTest, namespace: str, manifest: dict[str, Any],
            timeout: float = 120) -> dict[str, Any]:
    """Create the pod and wait until it has finished; its final object."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    name = manifest["metadata"]["name"]
    deadline = time.monotonic() + timeout
    while True:
        pod: dict[str, Any] = json.loads(
            cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout)
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return pod
        assert time.monotonic() < deadline, json.dumps(pod.get("status"), indent=1)
        time.sleep(0.3)


def ctr(cluster: ClusterUnderTest, *args: str) -> str:
    """`ctr -n k8s.io ARGS` against the real node's containerd."""
    assert cluster.local is not None and cluster.local.real_node is not None
    node = cluster.local.real_node
    result = subprocess.run([str(node.bin_dir / "ctr"), "--address", str(node.address),
                             "-n", "k8s.io", *args],
                            capture_output=True, text=True, check=True, timeout=60)
    return result.stdout
