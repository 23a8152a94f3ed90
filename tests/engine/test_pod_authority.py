"""What step pod settings ask of the run's authority (engine/authority.py, README's Step pod
settings): get for the objects a pod reads, a token for a service account, create pods for what
Kubernetes leaves to a pod's creator. Table tests on plain data."""

from __future__ import annotations

from typing import Any

import pytest
from enginekit import workflow
from taskforge.api.steps import Step
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.authority import Identity, authority, denial_message, references

POD = "pods", "", "create", ""


def _spec(pod: dict[str, Any] | None = None, step_pod: dict[str, Any] | None = None) -> (
    WorkflowSpec
):
    step = Step.model_validate({"name": "s", "log": {"message": "hi"},
                                **({"pod": step_pod} if step_pod else {})})
    return workflow(step, **({"pod": pod} if pod else {}))


CASES: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None,
                  list[tuple[str, str, str, str, str]]]] = [
    ("resources alone need nothing", {"resources": {"limits": {"memory": "1Gi"}}}, None, []),
    ("an emptyDir needs nothing", {"volumes": [{"name": "w", "emptyDir": {}}],
                                   "volumeMounts": [{"name": "w", "mountPath": "/w"}]}, None, []),
    ("a ConfigMap volume: get it", None,
     {"volumes": [{"name": "c", "configMap": {"name": "cfg"}}],
      "volumeMounts": [{"name": "c", "mountPath": "/c"}]},
     [("configmaps", "cfg", "get", "", "spec.steps[0].pod.volumes[0].configMap")]),
    ("a Secret volume: get it", {"volumes": [{"name": "k", "secret": {"secretName": "tls"}}]},
     None, [("secrets", "tls", "get", "", "spec.pod.volumes[0].secret")]),
    ("a pull secret: get it, and create pods",
     {"imagePullSecrets": [{"name": "regcred"}]}, None,
     [("secrets", "regcred", "get", "", "spec.pod.imagePullSecrets[0]"),
      (*POD, "spec.pod.imagePullSecrets")]),
    ("a service account: a token for it, and create pods", None,
     {"serviceAccountName": "deployer"},
     [("serviceaccounts", "deployer", "create", "token", "spec.steps[0].pod.serviceAccountName"),
      (*POD, "spec.steps[0].pod.serviceAccountName")]),
    ("the token of the default account", {"automountServiceAccountToken": True}, None,
     [("serviceaccounts", "default", "create", "token", "spec.pod.serviceAccountName"),
      (*POD, "spec.pod.automountServiceAccountToken")]),
    ("a claim: get it, and create pods",
     {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}, None,
     [("persistentvolumeclaims", "data", "get", "", "spec.pod.volumes[0].persistentVolumeClaim"),
      (*POD, "spec.pod.volumes")]),
    ("scheduling and labels: create pods",
     {"nodeSelector": {"pool": "x"}, "labels": {"app": "y"}}, None,
     [(*POD, "spec.pod.nodeSelector")]),
    ("tolerations: create pods", None, {"tolerations": [{"operator": "Exists"}]},
     [(*POD, "spec.steps[0].pod.tolerations")]),
    ("priority: create pods", {"priorityClassName": "high"}, None,
     [(*POD, "spec.pod.priorityClassName")]),
    ("annotations: create pods", {"annotations": {"example.com/team": "a"}}, None,
     [(*POD, "spec.pod.annotations")]),
]


@pytest.mark.parametrize(("pod", "step_pod", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_pod_settings_references(pod: dict[str, Any] | None, step_pod: dict[str, Any] | None,
                                 expected: list[tuple[str, str, str, str, str]]) -> None:
    refs = references(_spec(pod, step_pod))
    assert [(r.resource, r.name, r.verb, r.subresource, r.field) for r in refs] == expected


def test_denials_name_the_verb() -> None:
    refs = references(_spec(step_pod={"serviceAccountName": "deployer"}))
    who = authority(Identity("alice"), "system:serviceaccount:tf:tf", None, None)
    assert denial_message(who, refs) == (
        "creator 'alice' may not create serviceaccounts/deployer/token"
        " (spec.steps[0].pod.serviceAccountName), create pods"
        " (spec.steps[0].pod.serviceAccountName)")
    nobody = authority(None, "op", None, None)
    assert denial_message(nobody, refs).startswith(
        "spec.steps[0].pod.serviceAccountName needs create serviceaccounts/deployer/token, but")
