"""Merging step pod settings: chart defaults, then the workflow's spec.pod, then the step's pod
(engine/podsettings.py). Table tests on plain data."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from taskforge.api.pod import PodSettings
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.podsettings import merge_pod_settings, pod_spec_fields


def pod(**kw: Any) -> PodSettings:
    return PodSettings.model_validate(kw)


def merged(*levels: dict[str, Any] | None) -> dict[str, Any] | None:
    out = merge_pod_settings(*(None if p is None else pod(**p) for p in levels))
    return None if out is None else out.to_k8s()


CASES: list[tuple[str, list[dict[str, Any] | None], dict[str, Any] | None]] = [
    ("nothing anywhere", [None, None, None], None),
    ("one level as it is", [None, {"serviceAccountName": "a"}, None], {"serviceAccountName": "a"}),
    ("the most specific single value wins",
     [{"serviceAccountName": "chart", "priorityClassName": "low"},
      {"serviceAccountName": "wf"}, {"serviceAccountName": "step"}],
     {"serviceAccountName": "step", "priorityClassName": "low"}),
    ("maps merge key by key",
     [{"nodeSelector": {"pool": "steps", "zone": "a"}, "labels": {"team": "x"}},
      {"nodeSelector": {"zone": "b"}}, {"labels": {"tier": "t"}}],
     {"nodeSelector": {"pool": "steps", "zone": "b"}, "labels": {"team": "x", "tier": "t"}}),
    ("pull secrets merge by name",
     [{"imagePullSecrets": [{"name": "a"}, {"name": "b"}]}, None,
      {"imagePullSecrets": [{"name": "b"}, {"name": "c"}]}],
     {"imagePullSecrets": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}),
    ("a volume of the same name is replaced in place",
     [{"volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]},
      {"volumes": [{"name": "v", "configMap": {"name": "cfg"}}]}, None],
     {"volumes": [{"name": "v", "configMap": {"name": "cfg"}}, {"name": "w", "emptyDir": {}}]}),
    ("mounts merge by path",
     [None, {"volumes": [{"name": "v", "emptyDir": {}}],
             "volumeMounts": [{"name": "v", "mountPath": "/a"}]},
      {"volumeMounts": [{"name": "v", "mountPath": "/a", "readOnly": True}]}],
     {"volumes": [{"name": "v", "emptyDir": {}}],
      "volumeMounts": [{"name": "v", "mountPath": "/a", "readOnly": True}]}),
    ("tolerations add up, each once",
     [{"tolerations": [{"key": "gpu", "operator": "Exists"}]},
      {"tolerations": [{"key": "gpu", "operator": "Exists"}, {"key": "spot", "operator":
                                                             "Exists"}]}, None],
     {"tolerations": [{"key": "gpu", "operator": "Exists"}, {"key": "spot", "operator":
                                                            "Exists"}]}),
    ("resources merge per resource name",
     [{"resources": {"requests": {"cpu": "50m"}, "limits": {"memory": "256Mi"}}}, None,
      {"resources": {"limits": {"memory": "1Gi", "cpu": "2"}}}],
     {"resources": {"requests": {"cpu": "50m"}, "limits": {"memory": "1Gi", "cpu": "2"}}}),
    ("affinity parts are chosen one by one",
     [{"affinity": {"nodeAffinity": {"n": 1}, "podAntiAffinity": {"p": 1}}}, None,
      {"affinity": {"nodeAffinity": {"n": 2}}}],
     {"affinity": {"nodeAffinity": {"n": 2}, "podAntiAffinity": {"p": 1}}}),
    ("automount: a step may turn it off again",
     [None, {"automountServiceAccountToken": True}, {"automountServiceAccountToken": False}],
     {"automountServiceAccountToken": False}),
]


@pytest.mark.parametrize(("levels", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_merge(levels: list[dict[str, Any] | None], expected: dict[str, Any] | None) -> None:
    assert merged(*levels) == expected


def test_chart_defaults_may_use_reserved_keys_and_still_merge() -> None:
    chart = PodSettings.model_validate(
        {"annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}},
        context={"trusted": True})
    out = merge_pod_settings(chart, pod(annotations={"example.com/team": "a"}))
    assert out is not None and out.annotations == {
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "true", "example.com/team": "a"}


def test_pod_spec_fields_leave_what_the_builder_places_itself() -> None:
    settings = pod(serviceAccountName="a", labels={"x": "y"},
                   resources={"limits": {"cpu": "1"}}, nodeSelector={"p": "q"})
    assert pod_spec_fields(settings) == {"serviceAccountName": "a", "nodeSelector": {"p": "q"}}
    assert pod_spec_fields(None) == {}


BAD: list[tuple[dict[str, Any], str]] = [
    ({"volumes": [{"name": "v"}]}, "must set exactly one of"),
    ({"volumes": [{"name": "v", "emptyDir": {}, "secret": {"secretName": "s"}}]},
     "must set exactly one of"),
    ({"volumes": [{"name": "v", "hostPath": {"path": "/"}}]}, "hostPath"),
    ({"volumes": [{"name": "tmp", "emptyDir": {}}]}, "is Taskforge's"),
    ({"volumeMounts": [{"name": "v", "mountPath": "/tmp"}]}, "is Taskforge's"),
    ({"volumeMounts": [{"name": "v", "mountPath": "relative"}]}, "mountPath"),
    ({"volumeMounts": [{"name": "v", "mountPath": "/a", "subPath": "../etc"}]}, "'..'"),
    ({"annotations": {"container.apparmor.security.beta.kubernetes.io/step": "unconfined"}},
     "reserved domain"),
    ({"labels": {"taskforge.io/run": "other"}}, "reserved domain"),
    ({"labels": {"app": "has space"}}, "labels"),
    ({"tolerations": [{"operator": "Sometimes"}]}, "tolerations.0.operator"),
    ({"hostNetwork": True}, "hostNetwork"),
    ({"securityContext": {"runAsUser": 0}}, "securityContext"),
]


@pytest.mark.parametrize(("data", "named"), BAD, ids=[str(b[0])[:50] for b in BAD])
def test_bad_settings_are_refused_naming_the_field(data: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as err:
        PodSettings.model_validate(data)
    assert named in str(err.value)


def test_a_mount_must_name_a_volume_of_the_workflow_or_the_step() -> None:
    mounts = {"volumeMounts": [{"name": "v", "mountPath": "/v"}]}
    base: dict[str, Any] = {"steps": [{"name": "s", "log": {"message": "m"}, "pod": mounts}]}
    with pytest.raises(ValidationError, match=r"steps\[0\].pod.volumeMounts: no volume named 'v'"):
        WorkflowSpec.model_validate(base)
    WorkflowSpec.model_validate({**base, "pod": {"volumes": [{"name": "v", "emptyDir": {}}]}})
