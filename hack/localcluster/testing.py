"""Test-side handles on a cluster, shared by the e2e fixtures and the tests.

Here rather than in a conftest so tests can import the types (conftest modules
are not importable by a stable name).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from localcluster.cluster import LocalCluster
from localcluster.controlplane import ControlPlane


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl call whose message includes kubectl's stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {self.stderr}\nstdout: {self.output}"


@dataclass
class ClusterUnderTest:
    """The cluster the e2e tests talk to, local or foreign."""

    kubeconfig: Path
    bin_dir: Path
    control_plane: ControlPlane | None = None
    local: LocalCluster | None = None

    @property
    def is_local(self) -> bool:
        return self.local is not None

    @property
    def node(self) -> str:
        """``agent`` or ``kubelet`` for the local cluster, ``foreign`` for any other."""
        return self.local.node_mode if self.local is not None else "foreign"

    @property
    def host_ip(self) -> str:
        """The address pods use to reach a server on this machine (test HTTP servers...)."""
        return self.local.host_ip if self.local is not None else "127.0.0.1"

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def api_client(self) -> k8s_client.ApiClient:
        """A new client for this cluster (the global default configuration is untouched)."""
        cfg = k8s_client.Configuration()
        load: Callable[..., None] = k8s_config.load_kube_config
        load(config_file=str(self.kubeconfig), client_configuration=cfg)
        return k8s_client.ApiClient(cfg)


class ExternalRedis:
    """A Redis named by REDIS_URL: usable, but not ours to stop."""

    def __init__(self, url: str) -> None:
        self.url = url

    def start(self) -> None:
        pytest.skip("REDIS_URL names an external Redis, which tests cannot restart")

    def stop(self) -> None:
        pytest.skip("REDIS_URL names an external Redis, which tests cannot stop")

    def restart(self) -> None:
        self.stop()
