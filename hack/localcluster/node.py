"""The agent's Node: registration, Lease renewal, and facts about this host.

The Node carries what the control plane needs from a kubelet: a Ready
condition, capacity, ``InternalIP`` 127.0.0.1 and the log server's port in
``daemonEndpoints`` (where the apiserver sends ``kubectl logs``). The Lease in
``kube-node-lease`` is renewed as a kubelet does, although no node-lifecycle
controller runs here to read it: tools and tests that look at it see a live node.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from localcluster.kubeapi import ApiError, KubeAPI
from localcluster.podstatus import LOCAL_IP, now
from localcluster.podworker import SHIM

log = logging.getLogger("localcluster.agent")
JSON = dict[str, Any]
LEASE_SECONDS = 40
RENEW_SECONDS = 10.0


class KubeObjects:
    """Secrets and ConfigMaps for env vars, read on demand (no cache: always current)."""

    def __init__(self, kube: KubeAPI) -> None:
        self.kube = kube

    def _get(self, path: str) -> JSON | None:
        try:
            return self.kube.get(path)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    def secret(self, namespace: str, name: str) -> JSON | None:
        return self._get(f"/api/v1/namespaces/{namespace}/secrets/{name}")

    def config_map(self, namespace: str, name: str) -> JSON | None:
        return self._get(f"/api/v1/namespaces/{namespace}/configmaps/{name}")


class NodeRegistration:
    def __init__(
        self, kube: KubeAPI, node_name: str, log_port: int, allocatable: dict[str, str]
    ) -> None:
        self.kube = kube
        self.node_name = node_name
        self.log_port = log_port
        self.allocatable = allocatable

    def register(self) -> None:
        nodes = "/api/v1/nodes"
        labels = {
            "kubernetes.io/hostname": self.node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "taskforge.io/local-agent": "true",
        }
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.node_name, "labels": labels}}
        try:
            self.kube.post(nodes, body)
        except ApiError as exc:
            if not exc.conflict:
                raise
        version = self.kube.get("/version").get("gitVersion", "v0.0.0")
        ready_since = now()
        conditions = [
            {"type": kind, "status": "False", "reason": f"KubeletHas{reason}",
             "message": f"local agent reports {reason}", "lastHeartbeatTime": ready_since,
             "lastTransitionTime": ready_since}
            for kind, reason in (("MemoryPressure", "SufficientMemory"),
                                 ("DiskPressure", "NoDiskPressure"),
                                 ("PIDPressure", "SufficientPID"))
        ]
        conditions.append({
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "taskforge local node agent is posting ready status",
            "lastHeartbeatTime": ready_since, "lastTransitionTime": ready_since,
        })
        status = {
            "capacity": self.allocatable,
            "allocatable": self.allocatable,
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": LOCAL_IP},
                          {"type": "Hostname", "address": self.node_name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.log_port}},
            "nodeInfo": {
                "machineID": "local", "systemUUID": "local", "bootID": str(os.getpid()),
                "kernelVersion": platform.release(), "osImage": "taskforge local node agent",
                "containerRuntimeVersion": "taskforge-local://0.1", "kubeletVersion": version,
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
            },
        }
        self.kube.merge_patch(f"{nodes}/{self.node_name}/status", {"status": status})
        log.info("node %s registered (log server on port %d)", self.node_name,
                 self.log_port)

    def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node_name}"
        renew = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        try:
            self.kube.merge_patch(path, {"spec": {"renewTime": renew}})
            return
        except ApiError as exc:
            if not exc.not_found:
                raise
        node = self.kube.get(f"/api/v1/nodes/{self.node_name}")
        self.kube.post(path.rsplit("/", 1)[0], {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.node_name, "ownerReferences": [{
                "apiVersion": "v1", "kind": "Node", "name": self.node_name,
                "uid": node["metadata"]["uid"],
            }]},
            "spec": {"holderIdentity": self.node_name, "leaseDurationSeconds": LEASE_SECONDS,
                     "renewTime": renew},
        })

    def lease_loop(self, stop: threading.Event) -> None:
        """Renew the Lease every 10 s (1 s while failing) until ``stop`` is set."""
        while not stop.is_set():
            wait = RENEW_SECONDS
            try:
                self.renew_lease()
            except ApiError as exc:
                # kube-node-lease may not exist yet right after the apiserver started
                log.debug("lease renewal failed: %s", exc)
                wait = 1.0
                if exc.not_found and "nodes" in exc.message:  # our Node was deleted
                    self._quietly(self.register)
            stop.wait(wait)

    @staticmethod
    def _quietly(call: Any) -> None:
        try:
            call()
        except ApiError as exc:
            log.warning("%s", exc)


def path_dirs(state_dir: Path) -> dict[str, str]:
    """``{venv_bin}``: this interpreter's bin dir; ``{python_bin}``: python/python3 links."""
    python_bin = state_dir / "bin-python"
    python_bin.mkdir(parents=True, exist_ok=True)
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    for name in ("python", "python3"):
        link = python_bin / name
        if not link.exists():
            link.symlink_to(base)
    return {"venv_bin": str(Path(sys.executable).parent), "python_bin": str(python_bin)}


def probe_mount_namespaces(state_dir: Path) -> bool:
    """Can a process get its own /dev/termination-log here (root, unshare allowed)?"""
    with tempfile.TemporaryDirectory(dir=state_dir) as tmp:
        src, dst = Path(tmp) / "src", Path(tmp) / "dst"
        src.write_text("probe-ok")
        dst.write_text("")
        spec = {"probe": True, "tm_src": str(src), "tm_dst": str(dst), "expect": "probe-ok"}
        result = subprocess.run([sys.executable, "-I", "-S", str(SHIM), json.dumps(spec)],
                                capture_output=True, text=True, check=False)
    ok = result.returncode == 0
    if ok:
        log.info("termination messages: per-container bind mount in a private mount namespace")
    else:
        log.warning("mount namespaces unavailable (%s); containers get only $%s",
                    result.stderr.strip().splitlines()[-1:] or result.returncode,
                    "TASKFORGE_TERMINATION_MESSAGE_PATH")
    return ok
