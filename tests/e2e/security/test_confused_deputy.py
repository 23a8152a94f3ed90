"""A run can use only what its creator could use directly (the confused-deputy attack).

The attack, as it worked before: a ServiceAccount that may only create and read WorkflowRuns
creates a run whose script step reads a Secret through `env.valueFrom.secretKeyRef` and prints
it reversed and base64-encoded (redaction catches only the exact value); the account then
reads the Secret from the run's status. Now the run fails with `Forbidden` before any Job.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest
from taskforge.engine.authority import CREATOR_ANNOTATION, LAST_WRITER_ANNOTATION
from taskforge.engine.webhook import sign

from tests.e2e.operator.conftest import Kube, OperatorProcess

SECRET_VALUE = "hunter2-" + uuid.uuid4().hex[:8]
ATTACK = {
    "steps": [{
        "name": "steal",
        "script": {
            "source": 'printf %s "$T" | rev | base64',
            "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}],
        },
    }],
}


def _apply(kube: Kube, cluster: Any, *objects: dict[str, Any], user: str | None = None) -> str:
    items = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    args = ["apply", "-n", kube.namespace, "-f", "-"]
    if user:
        args.append(f"--as={user}")
    return str(cluster.kubectl(*args, input=json.dumps(items)).stdout)


def _role(name: str, rules: list[dict[str, Any]], sa: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": name}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": sa}]},
    ]


RUNS_ONLY = [{"apiGroups": ["taskforge.io"], "resources": ["workflowruns"],
              "verbs": ["create", "get", "list", "watch"]}]
WORKFLOW_AUTHOR = [{"apiGroups": ["taskforge.io"], "resources": ["workflows", "workflowruns"],
                    "verbs": ["create", "get", "list", "watch", "update", "patch"]}]


@pytest.fixture
def tenant(kube: Kube, cluster: Any) -> str:
    """The restricted account (`--as` user) and the Secret it must not read."""
    _apply(kube, cluster,
           {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
            "stringData": {"pw": SECRET_VALUE}},
           {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "tenant"}},
           *_role("tenant", RUNS_ONLY, "tenant"))
    user = f"system:serviceaccount:{kube.namespace}:tenant"
    for verb, resource in (("get", "secrets"), ("create", "pods"), ("create", "jobs")):
        can = cluster.kubectl("auth", "can-i", verb, resource, "-n", kube.namespace,
                              f"--as={user}", check=False)
        assert can.stdout.strip() == "no", (verb, resource, can.stdout)
    return user


def _run(name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "taskforge.io/v1alpha1", "kind": "WorkflowRun",
            "metadata": {"name": name, **meta}, "spec": spec}


def _healthy(operator: OperatorProcess) -> None:
    response = httpx.get(f"http://127.0.0.1:{operator.http_port}/healthz", timeout=5)
    assert response.is_success, response.text


def _assert_forbidden(kube: Kube, name: str, *needles: str) -> dict[str, Any]:
    run = kube.wait_run(name, timeout=60)
    status = run["status"]
    assert status["phase"] == "Failed", status
    condition = next(c for c in status["conditions"] if c["type"] == "Succeeded")
    assert condition["reason"] == "Forbidden", condition
    for needle in needles:
        assert needle in status["message"], status["message"]
    assert kube.jobs(name) == [], "no Job may be created for a refused run"
    assert SECRET_VALUE not in json.dumps(run)
    assert "Forbidden" in kube.event_reasons(name, {"Forbidden"})
    return run


def test_inline_spec_cannot_read_a_secret_its_creator_cannot(
    kube: Kube, cluster: Any, tenant: str, running_operator: OperatorProcess
) -> None:
    _apply(kube, cluster, _run("steal", {"workflowSpec": ATTACK}), user=tenant)
    run = _assert_forbidden(kube, "steal", f"creator {tenant!r} may not get secrets/db",
                            "spec.steps[0].script.env[0].valueFrom.secretKeyRef")
    creator = json.loads(run["metadata"]["annotations"][CREATOR_ANNOTATION])
    assert creator["username"] == tenant
    _healthy(running_operator)


def test_the_creator_cannot_be_forged_nor_changed(
    kube: Kube, cluster: Any, tenant: str, running_operator: OperatorProcess
) -> None:
    forged = json.dumps({"username": "kubernetes-admin", "groups": ["system:masters"]})
    _apply(kube, cluster, _run("forged", {"workflowSpec": ATTACK, "cancel": False},
                               annotations={CREATOR_ANNOTATION: forged}), user=tenant)
    _assert_forbidden(kube, "forged", f"creator {tenant!r}")
    # An admin-created run keeps its creator whatever a later update (by anyone) says.
    _apply(kube, cluster, _run("mine", {"workflowSpec": {"steps": [
        {"name": "s", "log": {"message": "hi"}}]}}))
    kube.patch_run("mine", {"metadata": {"annotations": {CREATOR_ANNOTATION: forged}}})
    recorded = kube.run("mine")["metadata"]["annotations"][CREATOR_ANNOTATION]
    assert json.loads(recorded)["username"] != "kubernetes-admin"
    kube.patch_run("mine", {"metadata": {"annotations": {CREATOR_ANNOTATION: None}}})
    assert kube.run("mine")["metadata"]["annotations"][CREATOR_ANNOTATION] == recorded
    _healthy(running_operator)


def test_a_workflow_ref_checks_the_runs_creator_too(
    kube: Kube, cluster: Any, tenant: str, running_operator: OperatorProcess
) -> None:
    kube.workflow("admins", ATTACK)  # written by the admin, who may read the Secret
    _apply(kube, cluster, _run("via-ref", {"workflowRef": {"name": "admins"}}), user=tenant)
    _assert_forbidden(kube, "via-ref", f"creator {tenant!r} may not get secrets/db")


def test_a_creator_who_may_read_the_secret_can_use_it(
    kube: Kube, cluster: Any, tenant: str, running_operator: OperatorProcess
) -> None:
    _apply(kube, cluster, *_role("read-db", [{"apiGroups": [""], "resources": ["secrets"],
                                             "resourceNames": ["db"], "verbs": ["get"]}],
                                 "tenant"))
    _apply(kube, cluster, _run("allowed", {"workflowSpec": ATTACK}), user=tenant)
    run = kube.wait_run("allowed", timeout=60)
    assert run["status"]["phase"] == "Succeeded", run["status"]


def test_triggered_runs_act_for_the_workflows_last_writer(
    kube: Kube, cluster: Any, tenant: str, running_operator: OperatorProcess
) -> None:
    _apply(kube, cluster, *_role("author", WORKFLOW_AUTHOR, "tenant"),
           {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hook-key"},
            "stringData": {"key": "k3y"}})
    _apply(kube, cluster, {
        "apiVersion": "taskforge.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "hooked"},
        "spec": {**ATTACK, "triggers": {"webhook": {
            "secretRef": {"name": "hook-key", "key": "key"}}}},
    }, user=tenant)
    writer = kube.get_workflow("hooked")["metadata"]["annotations"][LAST_WRITER_ANNOTATION]
    assert json.loads(writer)["username"] == tenant
    time.sleep(1)  # the operator's cache sees the Workflow
    body = b"{}"
    response = httpx.post(
        f"http://127.0.0.1:{running_operator.http_port}/hooks/{kube.namespace}/hooked",
        content=body, timeout=10,
        headers={"Content-Type": "application/json", "X-Taskforge-Signature": sign(b"k3y", body)},
    )
    assert response.status_code == 202, response.text
    name = response.json()["run"]
    _assert_forbidden(kube, name, f"{tenant!r}, last writer of workflow 'hooked'",
                      "may not get secrets/db")
    _healthy(running_operator)
