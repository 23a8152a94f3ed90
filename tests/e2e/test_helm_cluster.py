"""The Helm chart's rendered manifests checked against a real apiserver.

* Server-side dry runs (`kubectl apply --dry-run=server`) of everything the chart renders,
  with the CRDs installed: full validation and admission, nothing created.
* The operator pod passes the `restricted` Pod Security Standard (PodSecurity admission,
  on by default in kube-apiserver), and a privileged variant of it is rejected.
* The RBAC the chart grants, applied for real and probed with `kubectl auth can-i` as the
  operator's ServiceAccount: everything the operator does is allowed, and nothing more.

These use the `cluster` and `namespace` fixtures of tests/e2e/conftest.py (the local control
plane, or TASKFORGE_E2E_KUBECONFIG). Cluster-scoped objects carry a random release name and
are deleted afterwards. Offline lint and render: test_helm_render.py. Shared helpers:
helm_kit.py.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helm_kit import (
    CRD_NAMES,
    NAMESPACED_VALUES,
    ROOT,
    Cluster,
    Manifest,
    by_kind,
    helm_binary,
    one,
    render,
    to_yaml,
    wait_established,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def helm() -> Path:
    return helm_binary()


def _release() -> str:
    return f"tf-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> Cluster:
    """The CRDs (the chart's templates render the same objects), installed and established."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    wait_established(cluster, CRD_NAMES)
    return cluster


@pytest.fixture(scope="module")
def server_version(cluster: Cluster) -> str:
    info = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    return str(info["serverVersion"]["gitVersion"]).lstrip("v")


@pytest.fixture
def extra_namespaces(cluster: Cluster) -> Iterator[list[str]]:
    """Two more fresh namespaces (to be watched), deleted without waiting afterwards."""
    names = [f"e2e-w-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        cluster.kubectl("create", "namespace", name)
    try:
        yield names
    finally:
        for name in names:
            cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found",
                            check=False)


def dry_run(cluster: Cluster, manifests: list[Manifest]) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=to_yaml(manifests),
                           check=False)


def test_default_manifests_pass_server_dry_run(
    crds: Cluster, helm: Path, namespace: str, server_version: str
) -> None:
    # The CRDs are the `crds` fixture's, applied server-side (test_helm_install.py upgrades them).
    # The `helm test` hook's pod needs its ServiceAccount to exist: test_helm_install.py's
    # ci-values test applies it with the accounts in place.
    manifests = render(helm, "--set", "redis.url=redis://redis:6379/0", "--set",
                       "crds.install=false", "--set", "tests.enabled=false", release=_release(),
                       namespace=namespace, kube_version=server_version)
    proc = dry_run(crds, manifests)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("(server dry run)") == len(manifests), proc.stdout
    assert "Warning" not in proc.stderr, proc.stderr


def test_namespaced_manifests_pass_server_dry_run(
    crds: Cluster, helm: Path, namespace: str, extra_namespaces: list[str], server_version: str
) -> None:
    watched = ",".join(extra_namespaces)
    manifests = render(helm, "--values", str(NAMESPACED_VALUES), "--set", "crds.install=false",
                       "--set", "tests.enabled=false",
                       "--set", f"watchNamespaces={{{watched}}}", release=_release(),
                       namespace=namespace, kube_version=server_version)
    assert {m["kind"] for m in manifests} >= {"Role", "RoleBinding", "Ingress"}
    proc = dry_run(crds, manifests)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("(server dry run)") == len(manifests), proc.stdout


SERVICE_MONITOR_CRD = "servicemonitors.monitoring.coreos.com"


def _has_service_monitors(cluster: Cluster) -> bool:
    return SERVICE_MONITOR_CRD in cluster.kubectl(
        "api-resources", "--api-group=monitoring.coreos.com", "-o", "name", check=False
    ).stdout.split()


@pytest.fixture(scope="module")
def service_monitors(crds: Cluster) -> Cluster:
    """A cluster that knows ServiceMonitors. The local control plane gets prometheus-operator's
    real CRD (hack/build-bins.sh caches it from the operator's Go module); a foreign cluster is
    used as it is, and the test skips when it runs no prometheus-operator."""
    if _has_service_monitors(crds):
        return crds
    if not crds.is_local:
        pytest.skip("the cluster has no ServiceMonitor CRD (prometheus-operator)")
    found = sorted((crds.bin_dir / "crds").glob("servicemonitors-*.yaml"))
    assert found, f"no ServiceMonitor CRD under {crds.bin_dir / 'crds'} (run hack/setup.sh)"
    crds.kubectl("apply", "--server-side", "-f", str(found[-1]))
    wait_established(crds, [SERVICE_MONITOR_CRD])
    return crds


def test_service_monitor_passes_server_dry_run(
    service_monitors: Cluster, helm: Path, namespace: str, server_version: str
) -> None:
    manifests = render(helm, "--set", "metrics.serviceMonitor.enabled=true",
                       "--show-only", "templates/servicemonitor.yaml", release=_release(),
                       namespace=namespace, kube_version=server_version)
    assert [m["kind"] for m in manifests] == ["ServiceMonitor"]
    proc = dry_run(service_monitors, manifests)
    assert proc.returncode == 0, proc.stderr
    assert "(server dry run)" in proc.stdout, proc.stdout

    # The check can fail: the real schema refuses an endpoint port of the wrong type.
    broken = json.loads(json.dumps(manifests[0]))
    broken["spec"]["endpoints"][0]["port"] = 8080
    refused = dry_run(service_monitors, [broken])
    assert refused.returncode != 0
    assert "spec.endpoints[0].port" in refused.stderr, refused.stderr


def _operator_pod(deployment: Manifest, namespace: str) -> Manifest:
    template = deployment["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "taskforge-pss-check", "namespace": namespace,
                     "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    }


def test_operator_pod_passes_the_restricted_pod_security_standard(
    cluster: Cluster, helm: Path, namespace: str, server_version: str
) -> None:
    cluster.kubectl("label", "namespace", namespace, "--overwrite",
                    "pod-security.kubernetes.io/enforce=restricted",
                    "pod-security.kubernetes.io/enforce-version=latest",
                    "pod-security.kubernetes.io/warn=restricted")
    manifests = render(helm, release=_release(), namespace=namespace,
                       kube_version=server_version)
    # The ServiceAccount admission plugin rejects pods whose ServiceAccount is missing.
    cluster.kubectl("apply", "-f", "-", input=to_yaml(by_kind(manifests, "ServiceAccount")))
    pod = _operator_pod(one(manifests, "Deployment"), namespace)

    accepted = dry_run(cluster, [pod])
    assert accepted.returncode == 0, accepted.stderr
    assert "violate" not in accepted.stderr, accepted.stderr

    # The check can fail: the same pod, privileged, is refused by the admission plugin.
    privileged = json.loads(json.dumps(pod))
    container = privileged["spec"]["containers"][0]
    container["securityContext"] = {"privileged": True, "allowPrivilegeEscalation": True}
    refused = dry_run(cluster, [privileged])
    assert refused.returncode != 0, refused.stdout
    assert "violates PodSecurity" in refused.stderr, refused.stderr
    assert "privileged" in refused.stderr

    # And so is a subtler miss: no seccomp profile.
    unconfined = json.loads(json.dumps(pod))
    del unconfined["spec"]["securityContext"]["seccompProfile"]
    del unconfined["spec"]["containers"][0]["securityContext"]["seccompProfile"]
    refused = dry_run(cluster, [unconfined])
    assert refused.returncode != 0, refused.stdout
    assert "seccompProfile" in refused.stderr, refused.stderr


class RBAC:
    """The chart's ServiceAccount and RBAC objects, applied for real; deleted afterwards."""

    def __init__(self, cluster: Cluster, manifests: list[Manifest], namespace: str) -> None:
        kinds = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
        self.cluster = cluster
        self.objects = [m for m in manifests if m["kind"] in kinds]
        self.namespace = namespace
        (account,) = by_kind(self.objects, "ServiceAccount")
        self.user = f"system:serviceaccount:{namespace}:{account['metadata']['name']}"

    def __enter__(self) -> RBAC:
        self.cluster.kubectl("apply", "-f", "-", input=to_yaml(self.objects))
        return self

    def __exit__(self, *exc: object) -> None:
        self.cluster.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-",
                             input=to_yaml(self.objects), check=False)

    def can(self, verb: str, resource: str, namespace: str | None = None,
            subresource: str | None = None) -> bool:
        args = ["auth", "can-i", verb, resource, f"--as={self.user}"]
        args += ["--namespace", namespace or self.namespace]
        if subresource:
            args.append(f"--subresource={subresource}")
        proc = self.cluster.kubectl(*args, check=False)
        answer = proc.stdout.strip()
        assert answer in {"yes", "no"}, proc.stdout + proc.stderr
        return answer == "yes"

    def wait_until_can(self, verb: str, resource: str, namespace: str) -> None:
        """New bindings reach the authorizer's cache within moments: wait for one."""
        deadline = time.monotonic() + 10
        while not self.can(verb, resource, namespace):
            assert time.monotonic() < deadline, f"{verb} {resource} in {namespace}: never"
            time.sleep(0.2)


# What the operator does in a namespace it serves: (verb, resource, subresource).
OPERATOR_NEEDS = [
    ("create", "jobs.batch", None),
    ("delete", "jobs.batch", None),
    ("watch", "jobs.batch", None),
    ("watch", "workflowruns.taskforge.io", None),
    ("create", "workflowruns.taskforge.io", None),
    ("delete", "workflowruns.taskforge.io", None),
    ("patch", "workflowruns.taskforge.io", "status"),
    ("update", "workflowruns.taskforge.io", "status"),
    ("patch", "workflows.taskforge.io", "status"),
    ("watch", "workflows.taskforge.io", None),
    ("watch", "pods", None),
    ("get", "pods", "log"),
    ("create", "events", None),
    ("create", "events.events.k8s.io", None),
    ("create", "configmaps", None),  # stored step results (owned by their run)
    ("get", "configmaps", None),
]
# What it must not be able to do (also proves that can-i can say no).
OPERATOR_MUST_NOT = [
    ("get", "secrets", None),
    ("list", "secrets", None),
    ("create", "pods", None),
    ("delete", "pods", None),
    ("update", "jobs.batch", None),
    ("create", "deployments.apps", None),
    ("create", "rolebindings.rbac.authorization.k8s.io", None),
]


def test_rbac_cluster_wide(
    crds: Cluster, helm: Path, namespace: str, server_version: str
) -> None:
    # Without the `helm test` hook: its ServiceAccount is not the operator's.
    manifests = render(helm, "--set", "tests.enabled=false", release=_release(),
                       namespace=namespace, kube_version=server_version)
    with RBAC(crds, manifests, namespace) as rbac:
        rbac.wait_until_can("create", "jobs.batch", namespace)
        for verb, resource, sub in OPERATOR_NEEDS:
            assert rbac.can(verb, resource, subresource=sub), f"cannot {verb} {resource} {sub}"
            # Cluster-wide: any other namespace too.
            assert rbac.can(verb, resource, "default", sub), f"{verb} {resource} in default"
        assert rbac.can("list", "customresourcedefinitions.apiextensions.k8s.io")
        assert rbac.can("watch", "namespaces")
        assert rbac.can("create", "subjectaccessreviews.authorization.k8s.io")
        for verb, resource, sub in OPERATOR_MUST_NOT:
            assert not rbac.can(verb, resource, subresource=sub), f"may {verb} {resource}"


def test_rbac_watch_namespaces(
    crds: Cluster, helm: Path, namespace: str, extra_namespaces: list[str], server_version: str
) -> None:
    watched = ",".join(extra_namespaces)
    manifests = render(helm, "--set", f"watchNamespaces={{{watched}}}",
                       "--set", "tests.enabled=false", release=_release(),
                       namespace=namespace, kube_version=server_version)
    with RBAC(crds, manifests, namespace) as rbac:
        for served in extra_namespaces:
            rbac.wait_until_can("create", "jobs.batch", served)
        rbac.wait_until_can("list", "customresourcedefinitions.apiextensions.k8s.io", namespace)
        for served in extra_namespaces:
            for verb, resource, sub in OPERATOR_NEEDS:
                assert rbac.can(verb, resource, served, sub), f"{verb} {resource} in {served}"
        # Not in a namespace it does not serve (its own included), nor cluster-wide.
        assert not rbac.can("create", "jobs.batch", namespace)
        assert not rbac.can("get", "secrets", "default")
        assert not rbac.can("watch", "workflowruns.taskforge.io", "default")
        # kopf's cluster-scoped needs remain.
        assert rbac.can("list", "customresourcedefinitions.apiextensions.k8s.io")
        assert rbac.can("list", "namespaces")
