"""Tenancy: the chart's user roles and its optional step policy, on a real apiserver.

* `<release>-view/-edit/-admin` aggregate into Kubernetes' view, edit and admin: a user
  bound to the built-in `view` in a namespace cannot create runs there, one bound to `edit`
  can (`kubectl --as`, so the real RBAC authorizer and aggregation controller decide).
* The ValidatingAdmissionPolicy (stepPolicy) refuses, at apply, a Workflow or an inline run
  whose container step uses an image the namespace may not use, naming the field.

Cluster-scoped objects carry a random release name and are deleted afterwards; the policy is
bound to the test's namespace only.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from localcluster.testing import ClusterUnderTest

from tests.e2e.helm_kit import (
    CRD_NAMES,
    ROOT,
    by_kind,
    helm_binary,
    render,
    to_yaml,
    wait_established,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def helm() -> Path:
    return helm_binary()


@pytest.fixture(scope="module")
def crds(cluster: ClusterUnderTest) -> ClusterUnderTest:
    """The CRDs, installed (or updated) and established: RBAC and policies name their kinds."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    wait_established(cluster, CRD_NAMES)
    return cluster


@pytest.fixture
def applied(crds: ClusterUnderTest) -> Iterator[list[dict[str, Any]]]:
    """Objects the test applies (append, then apply); deleted afterwards."""
    objects: list[dict[str, Any]] = []
    yield objects
    if objects:
        crds.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-",
                        input=to_yaml(objects), check=False)


def _server_version(cluster: ClusterUnderTest) -> str:
    info = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    return str(info["serverVersion"]["gitVersion"]).lstrip("v")


def _run(name: str, image: str = "busybox:1.36") -> dict[str, Any]:
    return {"apiVersion": "taskforge.io/v1alpha1", "kind": "WorkflowRun",
            "metadata": {"name": name},
            "spec": {"workflowSpec": {"steps": [{"name": "s", "container": {"image": image}}]}}}


def _workflow(name: str, *images: str) -> dict[str, Any]:
    steps = [{"name": f"s{i}", "container": {"image": image}} for i, image in enumerate(images)]
    return {"apiVersion": "taskforge.io/v1alpha1", "kind": "Workflow",
            "metadata": {"name": name}, "spec": {"steps": steps}}


def _as(cluster: ClusterUnderTest, user: str, namespace: str, obj: dict[str, Any],
        ) -> tuple[int, str]:
    proc = cluster.kubectl("create", f"--as={user}", "-n", namespace, "-f", "-",
                           input=yaml.safe_dump(obj), check=False)
    return proc.returncode, proc.stdout + proc.stderr


def _until(check: Any, what: str, timeout: float = 20.0) -> None:
    """The aggregation controller and the authorizer's cache settle within moments."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def test_viewer_cannot_create_runs_and_editor_can(
    cluster: ClusterUnderTest, helm: Path, namespace: str, applied: list[dict[str, Any]]
) -> None:
    release = f"tf-{uuid.uuid4().hex[:8]}"
    roles = render(helm, "--show-only", "templates/user-roles.yaml", release=release,
                   namespace=namespace, kube_version=_server_version(cluster))
    assert [r["metadata"]["name"] for r in roles] == [
        f"{release}-taskforge-admin", f"{release}-taskforge-edit", f"{release}-taskforge-view"]
    bindings = [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": f"{who}-{role}", "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": role},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": who}]}
        for who, role in (("viv", "view"), ("ed", "edit"))
    ]
    applied += roles
    cluster.kubectl("apply", "-f", "-", input=to_yaml(roles + bindings))

    def can(user: str, verb: str, resource: str = "workflowruns.taskforge.io",
            *extra: str) -> bool:
        proc = cluster.kubectl("auth", "can-i", verb, resource, f"--as={user}", "-n", namespace,
                               *extra, check=False)
        return proc.stdout.strip() == "yes"

    _until(lambda: can("viv", "list") and can("ed", "create"), "roles never aggregated")
    assert can("viv", "watch", "workflows.taskforge.io")

    code, out = _as(cluster, "viv", namespace, _run("by-viewer"))
    assert code != 0 and "forbidden" in out.lower(), out
    assert 'cannot create resource "workflowruns" in API group "taskforge.io"' in out, out
    code, out = _as(cluster, "ed", namespace, _run("by-editor"))
    assert code == 0, out
    assert "workflowrun.taskforge.io/by-editor created" in out
    # Nobody but the operator writes status.
    assert can("ed", "delete")
    assert not can("ed", "patch", "workflowruns.taskforge.io", "--subresource=status")
    assert can("viv", "get", "workflowruns.taskforge.io", "--subresource=status")
    assert not can("viv", "delete")


def test_step_policy_rejects_a_disallowed_image_naming_the_field(
    cluster: ClusterUnderTest, helm: Path, namespace: str, applied: list[dict[str, Any]]
) -> None:
    release = f"tf-{uuid.uuid4().hex[:8]}"
    policy = render(
        helm, "--show-only", "templates/step-policy.yaml", "--set", "stepPolicy.enabled=true",
        "--set", f"stepPolicy.namespaces[0].namespace={namespace}",
        "--set", "stepPolicy.namespaces[0].images={registry.example.com/team-a/,busybox}",
        "--set", "stepPolicy.namespaces[0].serviceAccounts={default,team-a-steps}",
        release=release, namespace="taskforge-system", kube_version=_server_version(cluster))
    assert {m["kind"] for m in policy} == {"ValidatingAdmissionPolicy",
                                           "ValidatingAdmissionPolicyBinding"}
    applied += policy
    cluster.kubectl("apply", "-f", "-", input=to_yaml(policy))
    bad = _workflow("bad", "busybox:1.36", "registry.example.com/team-b/tool:1")

    def refused() -> bool:
        proc = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-",
                               input=yaml.safe_dump(bad), check=False)
        return proc.returncode != 0

    _until(refused, "the policy never took effect")
    proc = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(bad),
                           check=False)
    assert proc.returncode != 0
    assert "spec.steps[1].container.image: registry.example.com/team-b/tool:1" in proc.stderr
    assert f"not an image steps in namespace {namespace} may use" in proc.stderr, proc.stderr

    ok = _workflow("ok", "busybox", "busybox@sha256:" + "a" * 64,
                   "registry.example.com/team-a/tool:2")
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(ok))
    # A run's inline workflowSpec is checked too, finally steps included; `busyboxx` is not
    # the `busybox` repository.
    run = _run("inline")
    run["spec"]["workflowSpec"]["finally"] = [{"name": "f", "container": {"image": "busyboxx"}}]
    proc = cluster.kubectl("create", "-n", namespace, "-f", "-", input=yaml.safe_dump(run),
                           check=False)
    assert proc.returncode != 0
    assert "spec.workflowSpec.finally[0].container.image: busyboxx" in proc.stderr, proc.stderr
    # Service accounts: the workflow's spec.pod and each step's pod.
    escalating = _workflow("escalating", "busybox")
    escalating["spec"]["pod"] = {"serviceAccountName": "cluster-admin-sa"}
    proc = cluster.kubectl("apply", "-n", namespace, "-f", "-",
                           input=yaml.safe_dump(escalating), check=False)
    assert proc.returncode != 0
    assert "spec.pod.serviceAccountName: cluster-admin-sa is not a service account" in (
        proc.stderr), proc.stderr
    allowed = _workflow("allowed", "busybox")
    allowed["spec"]["steps"][0]["pod"] = {"serviceAccountName": "team-a-steps"}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(allowed))

    # Other namespaces are not bound.
    (binding,) = by_kind(policy, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": namespace}}
    other = cluster.kubectl("apply", "--dry-run=server", "-n", "default", "-f", "-",
                            input=yaml.safe_dump(bad), check=False)
    assert other.returncode == 0, other.stderr
