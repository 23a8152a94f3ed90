"""The Helm chart: lint, render, and check the rendered manifests against a real apiserver.

* `helm lint --strict`, and `helm template` with the default values and with
  charts/taskforge/ci/namespaced-values.yaml (watchNamespaces, Ingress on, no
  ServiceMonitor); values.schema.json rejects bad values.
* Server-side dry runs (`kubectl apply --dry-run=server`) of everything the chart renders,
  with the CRDs installed: full validation and admission, nothing created.
* The operator pod passes the `restricted` Pod Security Standard (PodSecurity admission,
  on by default in kube-apiserver), and a privileged variant of it is rejected.
* The RBAC the chart grants, applied for real and probed with `kubectl auth can-i` as the
  operator's ServiceAccount: everything the operator does is allowed, and nothing more.

The rendering tests need only the helm binary; the rest use the `cluster` and `namespace`
fixtures of tests/e2e/conftest.py (the local control plane, or TASKFORGE_E2E_KUBECONFIG).
Cluster-scoped objects carry a random release name and are deleted afterwards.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml
from localcluster import default_bin_dir

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "taskforge"
NAMESPACED_VALUES = CHART / "ci" / "namespaced-values.yaml"
CRD_NAMES = ("workflows.taskforge.io", "workflowruns.taskforge.io")
OPERATOR_SOURCES = ROOT / "operator"


class Cluster(Protocol):
    bin_dir: Path

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]: ...


Manifest = dict[str, Any]


# --- helpers ---------------------------------------------------------------------------


def _local_kube_version() -> str:
    """The Kubernetes release of the local control plane (hack/go.mod), for offline renders.

    Passed as --kube-version: a helm built from source without the release's ldflags
    assumes v1.20, older than the chart's kubeVersion.
    """
    match = re.search(r"^\s*k8s\.io/kubernetes v(\d+\.\d+\.\d+)", (ROOT / "hack" / "go.mod")
                      .read_text(), re.MULTILINE)
    assert match, "k8s.io/kubernetes is not required in hack/go.mod"
    return match.group(1)


@pytest.fixture(scope="module")
def helm() -> Path:
    found = shutil.which("helm")
    path = Path(found) if found else default_bin_dir() / "helm"
    assert path.exists(), f"no helm binary at {path} (run hack/setup.sh)"
    return path


def _run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120,
                          check=False)
    if check:
        assert proc.returncode == 0, f"helm {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def render(helm: Path, *args: str, release: str = "taskforge", namespace: str = "taskforge-system",
           kube_version: str | None = None) -> list[Manifest]:
    """`helm template` of the chart, as a list of objects."""
    proc = _run_helm(helm, "template", release, str(CHART), "--namespace", namespace,
                     "--kube-version", kube_version or _local_kube_version(), *args)
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


def _release() -> str:
    return f"tf-{uuid.uuid4().hex[:8]}"


# --- lint and render (helm only) -------------------------------------------------------


@pytest.mark.parametrize("values", [None, NAMESPACED_VALUES], ids=["defaults", "namespaced"])
def test_helm_lint_strict(helm: Path, values: Path | None) -> None:
    extra = ["--values", str(values)] if values else []
    proc = _run_helm(helm, "lint", "--strict", "--kube-version", _local_kube_version(),
                     str(CHART), *extra)
    assert "0 chart(s) failed" in proc.stdout


def test_render_defaults(helm: Path) -> None:
    manifests = render(helm)
    kinds = sorted(m["kind"] for m in manifests)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Service",
                     "ServiceAccount"]
    for m in manifests:
        labels = m["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "taskforge"
        assert labels["app.kubernetes.io/instance"] == "taskforge"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == "0.1.0"

    deployment = one(manifests, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/taskforge/taskforge:0.1.0"
    assert container["command"] == ["taskforge-operator"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "webhook": 8081, "health": 8082}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]

    env = container_env(deployment)
    assert env == {
        "TASKFORGE_EXECUTOR_IMAGE": "ghcr.io/taskforge/taskforge:0.1.0",
        "TASKFORGE_IMAGE_PULL_POLICY": "IfNotPresent",
        "TASKFORGE_JOB_TTL_SECONDS": "600",
        "TASKFORGE_NAMESPACES": "",
        "TASKFORGE_WORKERS": "8",
        "TASKFORGE_METRICS_PORT": "8080",
        "TASKFORGE_WEBHOOK_PORT": "8081",
        "TASKFORGE_HEALTH_PORT": "8082",
        "TASKFORGE_STEP_EVENTS": "true",
        "TASKFORGE_LOG_LEVEL": "INFO",
        "TASKFORGE_RATE_LIMIT_POLICY": "open",
    }

    service = one(manifests, "Service")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "metrics": 8080, "webhook": 8081}
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert one(manifests, "ClusterRoleBinding")["subjects"] == [
        {"kind": "ServiceAccount", "name": "taskforge", "namespace": "taskforge-system"}]


def test_every_env_var_the_chart_sets_is_read_by_the_operator(helm: Path) -> None:
    """A misspelt variable would be silently ignored: each name must occur in operator/."""
    manifests = render(helm, "--set", "redis.url=redis://redis:6379/0",
                       "--set", "redis.keyPrefix=tf:")
    names = set(container_env(one(manifests, "Deployment")))
    assert {"REDIS_URL", "TASKFORGE_REDIS_PREFIX"} <= names
    sources = "\n".join(p.read_text() for p in OPERATOR_SOURCES.rglob("*.py"))
    assert not sorted(n for n in names if n not in sources)


def test_redis_url_travels_in_a_secret(helm: Path) -> None:
    url = "redis://:s3cret@redis.example:6379/2"
    manifests = render(helm, "--set", f"redis.url={url}")
    secret = one(manifests, "Secret")
    assert secret["metadata"]["name"] == "taskforge-redis"
    deployment = one(manifests, "Deployment")
    assert "s3cret" not in yaml.safe_dump(deployment)
    assert container_env(deployment)["REDIS_URL"] == {
        "secretKeyRef": {"name": "taskforge-redis", "key": "url"}}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/redis-url" in annotations  # a new URL rolls the pod


def test_render_namespaced_values(helm: Path) -> None:
    manifests = render(helm, "--values", str(NAMESPACED_VALUES), release="tf", namespace="ops")
    assert not by_kind(manifests, "ServiceMonitor")
    assert not by_kind(manifests, "Secret")  # redis.existingSecret is used as it is
    roles = by_kind(manifests, "Role")
    bindings = by_kind(manifests, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "tf-taskforge", "namespace": "ops"}]
    # Only the cluster-scoped rules stay in the ClusterRole.
    cluster_role = one(manifests, "ClusterRole")
    groups = {g for rule in cluster_role["rules"] for g in rule["apiGroups"]}
    assert groups == {"apiextensions.k8s.io", ""}
    assert {r for rule in cluster_role["rules"] for r in rule["resources"]} == {
        "customresourcedefinitions", "namespaces"}

    env = container_env(one(manifests, "Deployment"))
    assert env["TASKFORGE_NAMESPACES"] == "team-a,team-b"
    assert env["TASKFORGE_JOB_TTL_SECONDS"] == "off"
    assert env["TASKFORGE_RATE_LIMIT_POLICY"] == "closed"
    assert env["TASKFORGE_WORKERS"] == "4"
    assert env["REDIS_URL"] == {"secretKeyRef": {"name": "taskforge-redis", "key": "redis-url"}}

    ingress = one(manifests, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "hooks.example.com"
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/hooks"
    assert path["backend"]["service"] == {"name": "tf-taskforge", "port": {"name": "webhook"}}


def test_render_service_monitor(helm: Path) -> None:
    manifests = render(helm, "--set", "metrics.serviceMonitor.enabled=true",
                       "--set", "metrics.serviceMonitor.labels.release=prometheus")
    monitor = one(manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    service = one(manifests, "Service")
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics",
                                             "interval": "30s"}]


def test_executor_image_defaults_to_the_operator_image(helm: Path) -> None:
    env = container_env(one(render(helm, "--set", "image.repository=taskforge",
                                   "--set", "image.tag=dev", "--set", "image.pullPolicy=Never"),
                            "Deployment"))
    assert env["TASKFORGE_EXECUTOR_IMAGE"] == "taskforge:dev"
    assert env["TASKFORGE_IMAGE_PULL_POLICY"] == "Never"
    env = container_env(one(render(helm, "--set", "executorImage=registry.example/exec:1",
                                   "--set", "executorImagePullPolicy=Always"), "Deployment"))
    assert env["TASKFORGE_EXECUTOR_IMAGE"] == "registry.example/exec:1"
    assert env["TASKFORGE_IMAGE_PULL_POLICY"] == "Always"


@pytest.mark.parametrize(
    "bad",
    [
        "rateLimitPolicy=sometimes",
        "workers=0",
        "watchNamespaces={Team-A}",
        "replicaCount=3",  # unknown: the operator is a single replica
        "redis.url=http://redis:6379",
        "image.pullPolicy=Sometimes",
        "jobTTLSeconds=-1",
    ],
)
def test_schema_rejects_bad_values(helm: Path, bad: str) -> None:
    proc = _run_helm(helm, "template", "taskforge", str(CHART), "--kube-version",
                     _local_kube_version(), "--set", bad, check=False)
    assert proc.returncode != 0, f"{bad} was accepted"
    assert "schema" in proc.stderr.lower(), proc.stderr


def test_rbac_grants_no_wildcards_and_only_known_verbs(helm: Path) -> None:
    allowed = {"get", "list", "watch", "create", "delete", "patch", "update"}
    for values in ([], ["--values", str(NAMESPACED_VALUES)]):
        for role in [m for m in render(helm, *values) if m["kind"] in {"ClusterRole", "Role"}]:
            for rule in role["rules"]:
                assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
                assert set(rule["verbs"]) <= allowed, rule
                if "secrets" in rule["resources"]:
                    assert rule["verbs"] == ["get"], "secrets: get by name, never list"


# --- against the cluster ---------------------------------------------------------------


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> Cluster:
    """The chart's CRDs, installed (or updated) and established."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    deadline = time.monotonic() + 60
    # `kubectl wait` fails outright, rather than waiting, while a new CRD has no conditions.
    while cluster.kubectl("wait", "--for=condition=established", "--timeout=10s",
                          *(f"crd/{name}" for name in CRD_NAMES), check=False).returncode:
        assert time.monotonic() < deadline, "the CRDs were not established within 60 s"
        time.sleep(0.5)
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
    manifests = render(helm, "--set", "redis.url=redis://redis:6379/0", release=_release(),
                       namespace=namespace, kube_version=server_version)
    proc = dry_run(crds, manifests)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("(server dry run)") == len(manifests), proc.stdout
    assert "Warning" not in proc.stderr, proc.stderr


def test_namespaced_manifests_pass_server_dry_run(
    crds: Cluster, helm: Path, namespace: str, extra_namespaces: list[str], server_version: str
) -> None:
    watched = ",".join(extra_namespaces)
    manifests = render(helm, "--values", str(NAMESPACED_VALUES),
                       "--set", f"watchNamespaces={{{watched}}}", release=_release(),
                       namespace=namespace, kube_version=server_version)
    assert {m["kind"] for m in manifests} >= {"Role", "RoleBinding", "Ingress"}
    proc = dry_run(crds, manifests)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("(server dry run)") == len(manifests), proc.stdout


def test_service_monitor_passes_server_dry_run(
    crds: Cluster, helm: Path, namespace: str, server_version: str
) -> None:
    resources = crds.kubectl("api-resources", "--api-group=monitoring.coreos.com", "-o", "name",
                             check=False).stdout.split()
    if "servicemonitors.monitoring.coreos.com" not in resources:
        pytest.skip("the cluster has no ServiceMonitor CRD (prometheus-operator)")
    manifests = render(helm, "--set", "metrics.serviceMonitor.enabled=true",
                       "--show-only", "templates/servicemonitor.yaml", release=_release(),
                       namespace=namespace, kube_version=server_version)
    proc = dry_run(crds, manifests)
    assert proc.returncode == 0, proc.stderr


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
    ("get", "secrets", None),
]
# What it must not be able to do (also proves that can-i can say no).
OPERATOR_MUST_NOT = [
    ("list", "secrets", None),
    ("create", "pods", None),
    ("delete", "pods", None),
    ("update", "jobs.batch", None),
    ("create", "deployments.apps", None),
    ("get", "configmaps", None),
    ("create", "rolebindings.rbac.authorization.k8s.io", None),
]


def test_rbac_cluster_wide(
    crds: Cluster, helm: Path, namespace: str, server_version: str
) -> None:
    manifests = render(helm, release=_release(), namespace=namespace,
                       kube_version=server_version)
    with RBAC(crds, manifests, namespace) as rbac:
        rbac.wait_until_can("create", "jobs.batch", namespace)
        for verb, resource, sub in OPERATOR_NEEDS:
            assert rbac.can(verb, resource, subresource=sub), f"cannot {verb} {resource} {sub}"
            # Cluster-wide: any other namespace too.
            assert rbac.can(verb, resource, "default", sub), f"{verb} {resource} in default"
        assert rbac.can("list", "customresourcedefinitions.apiextensions.k8s.io")
        assert rbac.can("watch", "namespaces")
        for verb, resource, sub in OPERATOR_MUST_NOT:
            assert not rbac.can(verb, resource, subresource=sub), f"may {verb} {resource}"


def test_rbac_watch_namespaces(
    crds: Cluster, helm: Path, namespace: str, extra_namespaces: list[str], server_version: str
) -> None:
    watched = ",".join(extra_namespaces)
    manifests = render(helm, "--set", f"watchNamespaces={{{watched}}}", release=_release(),
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
