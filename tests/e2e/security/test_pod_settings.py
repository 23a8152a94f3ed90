"""Step pod settings end to end (issue 15 item 3): a private-registry style pull secret and
labels on the step pod, a step that reads a mounted ConfigMap, and a tenant who may only create
runs gaining nothing through pod settings (Forbidden before any Job)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.e2e.operator.conftest import Kube, OperatorProcess
from tests.e2e.security.test_confused_deputy import _apply, _assert_forbidden, _run, tenant

__all__ = ["tenant"]

DOCKER_CONFIG = json.dumps({"auths": {"registry.example.internal": {
    "auth": base64.b64encode(b"robot:token").decode()}}})


def _pods(kube: Kube, run: str) -> list[Any]:
    items: list[Any] = kube.core.list_namespaced_pod(
        kube.namespace, label_selector=f"taskforge.io/run={run}").items
    return items


@pytest.mark.both_nodes
def test_a_pull_secret_and_labels_reach_the_step_pod(kube: Kube, cluster: Any) -> None:
    _apply(kube, cluster, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "regcred"},
                           "type": "kubernetes.io/dockerconfigjson",
                           "stringData": {".dockerconfigjson": DOCKER_CONFIG}})
    kube.workflow("private", {
        "pod": {"imagePullSecrets": [{"name": "regcred"}], "labels": {"team": "payments"}},
        "steps": [{"name": "s", "log": {"message": "from a private registry"},
                   "pod": {"annotations": {"example.com/cost-center": "42"}}}],
    })
    name = kube.start_run("private")
    run = kube.wait_run(name)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    job = kube.jobs(name)[0]
    template = job.spec.template
    assert [s.name for s in template.spec.image_pull_secrets] == ["regcred"]
    assert template.metadata.labels["team"] == "payments"
    assert template.metadata.labels["taskforge.io/step"] == "s"
    assert template.metadata.annotations == {"example.com/cost-center": "42"}
    pods = _pods(kube, name)
    assert pods and [s.name for s in pods[0].spec.image_pull_secrets] == ["regcred"]
    assert pods[0].spec.automount_service_account_token is False
    assert pods[0].spec.security_context.run_as_non_root is True


@pytest.mark.both_nodes
def test_a_step_reads_a_mounted_configmap(kube: Kube, cluster: Any) -> None:
    _apply(kube, cluster, {"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "app-config"},
                           "data": {"settings.json": json.dumps({"greeting": "hello, volume"}),
                                    "ignored": "x"}})
    kube.workflow("reads-config", {
        "pod": {"volumes": [{"name": "config", "configMap": {
            "name": "app-config", "items": [{"key": "settings.json", "path": "app.json"}]}}]},
        "steps": [{"name": "read", "script": {
            "source": 'cat /etc/taskforge-e2e/config/app.json > "$TASKFORGE_RESULT"\n'
                      "test ! -e /etc/taskforge-e2e/config/ignored\n"
                      "! touch /etc/taskforge-e2e/config/new 2>/dev/null"},
            "pod": {"volumeMounts": [{"name": "config", "mountPath": "/etc/taskforge-e2e/config",
                                      "readOnly": True}]}}],
    })
    name = kube.start_run("reads-config")
    run = kube.wait_run(name)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["steps"]["read"]["outputs"]["greeting"] == "hello, volume"
    volumes = kube.jobs(name)[0].spec.template.spec.volumes
    assert [v.name for v in volumes] == ["tmp", "config"]


def test_pod_settings_give_a_tenant_nothing_it_lacks(
    kube: Kube, cluster: Any, tenant: str, running_operator: OperatorProcess
) -> None:
    _apply(kube, cluster, {"apiVersion": "v1", "kind": "ServiceAccount",
                           "metadata": {"name": "deployer"}})
    steal = {"pod": {"volumes": [{"name": "s", "secret": {"secretName": "db"}}]},
             "steps": [{"name": "s", "script": {"source": "cat /s/pw | rev"},
                        "pod": {"volumeMounts": [{"name": "s", "mountPath": "/s"}]}}]}
    _apply(kube, cluster, _run("mount-secret", {"workflowSpec": steal}), user=tenant)
    _assert_forbidden(kube, "mount-secret", f"creator {tenant!r} may not get secrets/db"
                      " (spec.pod.volumes[0].secret)")
    act_as = {"steps": [{"name": "s", "log": {"message": "x"},
                         "pod": {"serviceAccountName": "deployer",
                                 "automountServiceAccountToken": True}}]}
    _apply(kube, cluster, _run("act-as", {"workflowSpec": act_as}), user=tenant)
    _assert_forbidden(kube, "act-as", "create serviceaccounts/deployer/token",
                      "create pods (spec.steps[0].pod.serviceAccountName)")
