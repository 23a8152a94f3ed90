"""The Helm chart rendered and linted, offline (needs only the helm binary).

* `helm lint --strict`, and `helm template` with the default values and with
  charts/taskforge/ci/namespaced-values.yaml (watchNamespaces, Ingress on, no
  ServiceMonitor); values.schema.json rejects bad values.

Against a real apiserver: test_helm_cluster.py. Shared helpers: helm_kit.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from taskforge.api import crdgen
from taskforge.handlers.config import parse_priority_classes

from tests.e2e.helm_kit import (
    CHART,
    NAMESPACED_VALUES,
    OPERATOR_SOURCES,
    by_kind,
    container_env,
    helm_binary,
    local_kube_version,
    one,
    render,
    run_helm,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def helm() -> Path:
    return helm_binary()


# --- lint and render (helm only) -------------------------------------------------------


@pytest.mark.parametrize("values", [None, NAMESPACED_VALUES], ids=["defaults", "namespaced"])
def test_helm_lint_strict(helm: Path, values: Path | None) -> None:
    extra = ["--values", str(values)] if values else []
    proc = run_helm(helm, "lint", "--strict", "--kube-version", local_kube_version(),
                    str(CHART), *extra)
    assert "0 chart(s) failed" in proc.stdout


def test_render_defaults(helm: Path) -> None:
    manifests = render(helm)
    kinds = sorted(m["kind"] for m in manifests)
    # ClusterRoles: the operator's, and the user roles (view, edit, admin). The `helm test`
    # hook adds a ServiceAccount, Role, RoleBinding, Workflow and Pod.
    assert kinds == (["ClusterRole"] * 4 + ["ClusterRoleBinding", "CustomResourceDefinition",
                     "CustomResourceDefinition", "Deployment", "FlowSchema",
                     "MutatingWebhookConfiguration", "Pod", "PodDisruptionBudget",
                     "PriorityLevelConfiguration"]
                     + ["Role"] * 2 + ["RoleBinding"] * 2 + ["Secret", "Service"]
                     + ["ServiceAccount"] * 2 + ["ValidatingWebhookConfiguration", "Workflow"])
    for m in manifests:
        labels = m["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "taskforge"
        assert labels["app.kubernetes.io/instance"] == "taskforge"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == "0.1.0"

    deployment = one(manifests, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2  # leader election: tests/e2e/test_helm_ha.py
    assert spec["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
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
    assert ports == {"http": 8080, "admission": 9443}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]

    env = container_env(deployment)
    assert env == {
        "TASKFORGE_EXECUTOR_IMAGE": "ghcr.io/taskforge/taskforge:0.1.0",
        "TASKFORGE_IMAGE_PULL_POLICY": "IfNotPresent",
        "TASKFORGE_JOB_TTL_SECONDS": "600",
        "TASKFORGE_NAMESPACES": "",
        "TASKFORGE_WORKERS": "8",
        "TASKFORGE_MAX_PRIORITY": "1000",
        "TASKFORGE_HTTP_PORT": "8080",
        "TASKFORGE_LEADER_ELECTION": "true",
        "TASKFORGE_LEASE_NAME": "taskforge",
        "TASKFORGE_LEASE_NAMESPACE": "taskforge-system",
        "TASKFORGE_LEASE_IDENTITY": {"fieldRef": {"fieldPath": "metadata.name"}},
        "TASKFORGE_LEASE_DURATION_SECONDS": "10",
        "TASKFORGE_LEASE_RENEW_DEADLINE_SECONDS": "7",
        "TASKFORGE_LEASE_RETRY_PERIOD_SECONDS": "1",
        "TASKFORGE_STEP_EVENTS": "true",
        "TASKFORGE_STATUS_COALESCE_SECONDS": "3",
        "TASKFORGE_LOG_LEVEL": "INFO",
        "TASKFORGE_LOG_FORMAT": "json",
        "TASKFORGE_METRICS_WORKFLOW_LABEL": "true",
        "TASKFORGE_RATE_LIMIT_POLICY": "open",
        "TASKFORGE_ADMISSION": "service",
        "TASKFORGE_ADMISSION_PORT": "9443",
        "TASKFORGE_ADMISSION_CERT_DIR": "/etc/taskforge/admission",
    }

    service = one(manifests, "Service")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "http": 8080, "admission": 443}
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
    secrets = {m["metadata"]["name"]: m for m in by_kind(manifests, "Secret")}
    assert set(secrets) == {"taskforge-redis", "taskforge-admission-tls"}
    deployment = one(manifests, "Deployment")
    assert "s3cret" not in yaml.safe_dump(deployment)
    assert container_env(deployment)["REDIS_URL"] == {
        "secretKeyRef": {"name": "taskforge-redis", "key": "url"}}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/redis-url" in annotations  # a new URL rolls the pod


def test_render_namespaced_values(helm: Path) -> None:
    # Without the `helm test` hook (its Role would be a third one, in team-a).
    manifests = render(helm, "--values", str(NAMESPACED_VALUES), "--set", "tests.enabled=false",
                       release="tf", namespace="ops")
    assert not by_kind(manifests, "ServiceMonitor")
    # redis.existingSecret is used as it is; only the admission certificate is made
    assert [m["metadata"]["name"] for m in by_kind(manifests, "Secret")] == [
        "tf-taskforge-admission-tls"]
    lease = "tf-taskforge-leader-election"  # the Lease's Role: test_helm_ha.py
    roles = [r for r in by_kind(manifests, "Role") if r["metadata"]["name"] != lease]
    bindings = [b for b in by_kind(manifests, "RoleBinding") if b["metadata"]["name"] != lease]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "tf-taskforge", "namespace": "ops"}]
    # Only the cluster-scoped rules stay in the ClusterRole.
    (cluster_role,) = [r for r in by_kind(manifests, "ClusterRole")
                       if r["metadata"]["name"] == "tf-taskforge"]
    groups = {g for rule in cluster_role["rules"] for g in rule["apiGroups"]}
    assert groups == {"apiextensions.k8s.io", "", "authorization.k8s.io"}
    assert {r for rule in cluster_role["rules"] for r in rule["resources"]} == {
        "customresourcedefinitions", "namespaces", "subjectaccessreviews"}
    # The admission webhook sees only the namespaces served.
    configs = [*by_kind(manifests, "MutatingWebhookConfiguration"),
               *by_kind(manifests, "ValidatingWebhookConfiguration")]
    for hook in [h for config in configs for h in config["webhooks"]]:
        assert hook["namespaceSelector"]["matchExpressions"] == [
            {"key": "kubernetes.io/metadata.name", "operator": "In",
             "values": ["team-a", "team-b"]}]

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
    assert path["backend"]["service"] == {"name": "tf-taskforge", "port": {"name": "http"}}


def test_render_service_monitor(helm: Path) -> None:
    manifests = render(helm, "--set", "metrics.serviceMonitor.enabled=true",
                       "--set", "metrics.serviceMonitor.labels.release=prometheus")
    monitor = one(manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    service = one(manifests, "Service")
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics",
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
        "stepPriorityClasses[0].minPriority=5000,stepPriorityClasses[0].className=x",
        "stepPriorityClasses[0].minPriority=1,stepPriorityClasses[0].className=Bad_Name",
        "stepPriorityClasses[0].minPriority=1",
        "stepPriorityClasses[0].className=x,stepPriorityClasses[0].minPriority=1,"
        "stepPriorityClasses[0].value=3",
    ],
)
def test_schema_rejects_bad_values(helm: Path, bad: str) -> None:
    proc = run_helm(helm, "template", "taskforge", str(CHART), "--kube-version",
                    local_kube_version(), "--set", bad, check=False)
    assert proc.returncode != 0, f"{bad} was accepted"
    assert "schema" in proc.stderr.lower(), proc.stderr


def test_step_priority_classes_reach_the_operator_as_json(helm: Path) -> None:
    """stepPriorityClasses travels as TASKFORGE_STEP_PRIORITY_CLASSES, which the operator
    parses into the bands the Job builder uses; unset, the variable is not there."""
    assert "TASKFORGE_STEP_PRIORITY_CLASSES" not in container_env(
        one(render(helm), "Deployment"))
    env = container_env(one(render(
        helm, "--set", "stepPriorityClasses[0].minPriority=100",
        "--set", "stepPriorityClasses[0].className=taskforge-urgent",
        "--set", "stepPriorityClasses[1].minPriority=-1000",
        "--set", "stepPriorityClasses[1].className=taskforge-batch"), "Deployment"))
    value = env["TASKFORGE_STEP_PRIORITY_CLASSES"]
    assert isinstance(value, str)
    assert parse_priority_classes(value) == ((100, "taskforge-urgent"),
                                             (-1000, "taskforge-batch"))


def test_rbac_grants_no_wildcards_and_only_known_verbs(helm: Path) -> None:
    allowed = {"get", "list", "watch", "create", "delete", "patch", "update"}
    for values in ([], ["--values", str(NAMESPACED_VALUES)]):
        for role in [m for m in render(helm, *values) if m["kind"] in {"ClusterRole", "Role"}]:
            for rule in role["rules"]:
                assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
                assert set(rule["verbs"]) <= allowed, rule
                if "secrets" in rule["resources"]:
                    assert rule["verbs"] == ["get"], "secrets: get by name, never list"


def test_no_right_on_secrets_except_webhook_keys_where_listed(helm: Path) -> None:
    """The operator must not read Secrets for the runs (the step pods do, after the
    creator's SubjectAccessReview); only webhook keys, only in the namespaces listed."""
    def secret_roles(manifests: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return [(m["kind"], m["metadata"].get("namespace", "")) for m in manifests
                if m["kind"] in {"ClusterRole", "Role"}
                for rule in m["rules"] if "secrets" in rule["resources"]]

    for values in ([], ["--values", str(NAMESPACED_VALUES)]):
        assert secret_roles(render(helm, *values)) == []
    listed = render(helm, "--set", "webhook.secretNamespaces={hooks-a,hooks-b}")
    assert secret_roles(listed) == [("Role", "hooks-a"), ("Role", "hooks-b")]


def test_admission_webhook_points_at_the_service_with_the_secrets_ca(helm: Path) -> None:
    manifests = render(helm)
    (tls,) = [m for m in by_kind(manifests, "Secret")
              if m["metadata"]["name"] == "taskforge-admission-tls"]
    hooks = {h["name"]: h for kind in ("Mutating", "Validating")
             for h in one(manifests, f"{kind}WebhookConfiguration")["webhooks"]}
    assert set(hooks) == {"record-run-creator.taskforge.io", "record-workflow-writer.taskforge.io",
                          "validate-run.taskforge.io", "validate-workflow.taskforge.io"}
    for name, hook in hooks.items():
        assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
        assert hook["clientConfig"]["caBundle"] == tls["data"]["ca.crt"]
        assert hook["clientConfig"]["service"] == {
            "name": "taskforge", "namespace": "taskforge-system", "port": 443,
            "path": "/" + name.removesuffix(".taskforge.io")}
        assert hook["rules"][0]["operations"] == ["CREATE", "UPDATE"]
        assert "namespaceSelector" not in hook
    deployment = one(manifests, "Deployment")
    env = container_env(deployment)
    assert env["TASKFORGE_ADMISSION"] == "service"
    ports = {p["name"]: p["port"] for p in one(manifests, "Service")["spec"]["ports"]}
    assert ports["admission"] == 443
    off = render(helm, "--set", "admission.enabled=false")
    assert not by_kind(off, "MutatingWebhookConfiguration")
    assert not by_kind(off, "ValidatingWebhookConfiguration")
    assert container_env(one(off, "Deployment"))["TASKFORGE_ADMISSION"] == "off"



def test_crds_are_templates_gated_by_install_and_keep(helm: Path) -> None:
    """The rendered CRDs are crdgen's objects (escaped `{{` included) with the chart's labels;
    `crds.keep` sets the resource policy, `crds.install=false` leaves them out."""
    want = {f"{r.plural}.{crdgen.GROUP}": crdgen.crd(r) for r in crdgen.RESOURCES}
    rendered = {m["metadata"]["name"]: m for m in by_kind(render(helm), "CustomResourceDefinition")}
    assert set(rendered) == set(want)
    for name, crd in rendered.items():
        assert crd["spec"] == want[name]["spec"], f"{name}: the template renders another schema"
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    unkept = by_kind(render(helm, "--set", "crds.keep=false"), "CustomResourceDefinition")
    assert len(unkept) == 2 and all("annotations" not in m["metadata"] for m in unkept)
    assert not by_kind(render(helm, "--set", "crds.install=false"), "CustomResourceDefinition")
