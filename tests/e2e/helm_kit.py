"""Shared helpers of the Helm chart tests (test_helm_*.py): find helm, render the chart.

Not a test module. Each test module defines its own module-scoped `helm` fixture::

    @pytest.fixture(scope="module")
    def helm() -> Path:
        return helm_binary()
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import yaml
from localcluster import default_bin_dir

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "taskforge"
NAMESPACED_VALUES = CHART / "ci" / "namespaced-values.yaml"
CRD_NAMES = ("workflows.taskforge.io", "workflowruns.taskforge.io")
OPERATOR_SOURCES = ROOT / "operator"


class Cluster(Protocol):
    bin_dir: Path

    @property
    def is_local(self) -> bool: ...

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]: ...


Manifest = dict[str, Any]


def local_kube_version() -> str:
    """The Kubernetes release of the local control plane (hack/go.mod), for offline renders.

    Passed as --kube-version: a helm built from source without the release's ldflags
    assumes v1.20, older than the chart's kubeVersion.
    """
    match = re.search(r"^\s*k8s\.io/kubernetes v(\d+\.\d+\.\d+)", (ROOT / "hack" / "go.mod")
                      .read_text(), re.MULTILINE)
    assert match, "k8s.io/kubernetes is not required in hack/go.mod"
    return match.group(1)


def wait_established(cluster: Cluster, names: Iterable[str], timeout: float = 60.0) -> None:
    """Wait until the named CRDs are Established and their kinds are in discovery.

    `kubectl wait` fails outright, rather than waiting, while a new CRD has no conditions, and
    discovery (what `kubectl apply` resolves kinds with) lags the Established condition."""
    names = list(names)
    deadline = time.monotonic() + timeout
    while cluster.kubectl("wait", "--for=condition=established", "--timeout=10s",
                          *(f"crd/{name}" for name in names), check=False).returncode:
        assert time.monotonic() < deadline, f"{names} not established within {timeout:.0f} s"
        time.sleep(0.5)
    while not set(names) <= set(cluster.kubectl("api-resources", "-o", "name",
                                                check=False).stdout.split()):
        assert time.monotonic() < deadline, f"{names} not in discovery within {timeout:.0f} s"
        time.sleep(0.5)


def helm_binary() -> Path:
    """The helm on PATH, else the one hack/setup.sh builds (what the `helm` fixtures return)."""
    found = shutil.which("helm")
    path = Path(found) if found else default_bin_dir() / "helm"
    assert path.exists(), f"no helm binary at {path} (run hack/setup.sh)"
    return path


def run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120,
                          check=False)
    if check:
        assert proc.returncode == 0, f"helm {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def render(helm: Path, *args: str, release: str = "taskforge", namespace: str = "taskforge-system",
           kube_version: str | None = None) -> list[Manifest]:
    """`helm template` of the chart, as a list of objects."""
    proc = run_helm(helm, "template", release, str(CHART), "--namespace", namespace,
                    "--kube-version", kube_version or local_kube_version(), *args)
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def by_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[Manifest], kind: str) -> Manifest:
    found = by_kind(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container_env(deployment: Manifest) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def to_yaml(manifests: list[Manifest]) -> str:
    return yaml.safe_dump_all(manifests, sort_keys=False)

