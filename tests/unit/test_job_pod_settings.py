"""The Job builder with step pod settings (adapters/jobs.py): the chart's defaults under the
merged workflow and step settings, never replacing the security context, Taskforge's labels or
its /tmp volume."""

from __future__ import annotations

import json
from typing import Any

import pytest
from taskforge.adapters.jobs import JobSettings, RunRef, build_job
from taskforge.api.pod import PodSettings
from taskforge.engine.actions import CreateJob
from taskforge.handlers.config import OperatorConfig, SettingsError

RUN = RunRef(name="r", namespace="ns", uid="u")
LABELS = {"taskforge.io/run": "r", "taskforge.io/step": "s"}


def action(step_type: str = "log", pod: dict[str, Any] | None = None,
           config: dict[str, Any] | None = None) -> CreateJob:
    return CreateJob(step="s", attempt=1, job_name="r-s-1", step_type=step_type,
                     config=config or {"message": "hi"}, timeout_seconds=None, labels=LABELS,
                     pod=None if pod is None else PodSettings.model_validate(pod))


def pod_of(job: dict[str, Any]) -> dict[str, Any]:
    return dict(job["spec"]["template"])


def test_without_settings_the_pod_is_as_before() -> None:
    spec = pod_of(build_job(action(), RUN, JobSettings()))["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in spec and "imagePullSecrets" not in spec
    assert spec["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}]
    assert spec["containers"][0]["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"},
                                                  "limits": {"memory": "256Mi"}}


def test_chart_workflow_and_step_settings_reach_the_pod() -> None:
    chart = PodSettings.model_validate(
        {"imagePullSecrets": [{"name": "mirror"}], "nodeSelector": {"pool": "steps"},
         "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"},
         "resources": {"limits": {"memory": "512Mi"}}}, context={"trusted": True})
    settings = JobSettings(pod_defaults=chart)
    job = build_job(action(pod={
        "serviceAccountName": "deployer", "imagePullSecrets": [{"name": "regcred"}],
        "tolerations": [{"key": "dedicated", "operator": "Exists"}],
        "priorityClassName": "batch", "labels": {"team": "a"},
        "volumes": [{"name": "cfg", "configMap": {"name": "settings"}}],
        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/app", "readOnly": True}],
        "resources": {"requests": {"cpu": "1"}},
    }), RUN, settings)
    template = pod_of(job)
    spec = template["spec"]
    assert spec["serviceAccountName"] == "deployer"
    assert spec["automountServiceAccountToken"] is False  # not asked for
    assert spec["imagePullSecrets"] == [{"name": "mirror"}, {"name": "regcred"}]
    assert spec["nodeSelector"] == {"pool": "steps"}
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert spec["priorityClassName"] == "batch"
    assert template["metadata"]["labels"] == {"team": "a", **LABELS}
    assert template["metadata"]["annotations"] == {
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}
    assert spec["volumes"][1] == {"name": "cfg", "configMap": {"name": "settings"}}
    container = spec["containers"][0]
    assert container["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "cfg", "mountPath": "/etc/app", "readOnly": True}]
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "64Mi"},
                                      "limits": {"memory": "512Mi"}}
    # Still restricted: the security contexts are Taskforge's.
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert job["metadata"]["labels"] == LABELS  # the Job's own labels stay Taskforge's


def test_explicit_automount_and_a_container_steps_own_resources() -> None:
    job = build_job(action("container", pod={"automountServiceAccountToken": True,
                                             "resources": {"limits": {"cpu": "9"}}},
                           config={"image": "busybox", "resources": {"limits": {"cpu": "1"}}}),
                    RUN, JobSettings())
    spec = pod_of(job)["spec"]
    assert spec["automountServiceAccountToken"] is True
    assert spec["containers"][0]["resources"] == {"limits": {"cpu": "1"}}


def test_taskforge_labels_win_over_trusted_chart_labels() -> None:
    chart = PodSettings.model_validate({"labels": {"taskforge.io/step": "forged"}},
                                       context={"trusted": True})
    job = build_job(action(), RUN, JobSettings(pod_defaults=chart))
    assert pod_of(job)["metadata"]["labels"]["taskforge.io/step"] == "s"


def test_chart_defaults_come_from_the_environment_and_a_bad_one_stops_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKFORGE_STEP_POD_DEFAULTS", json.dumps({
        "nodeSelector": {"pool": "steps"},
        "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}}))
    defaults = OperatorConfig.from_env().jobs.pod_defaults
    assert defaults is not None and defaults.node_selector == {"pool": "steps"}
    monkeypatch.setenv("TASKFORGE_STEP_POD_DEFAULTS", '{"volumes": [{"name": "x"}]}')
    with pytest.raises(SettingsError, match=r"TASKFORGE_STEP_POD_DEFAULTS.*volumes\.0"):
        OperatorConfig.from_env()


# --- stepPriorityClasses: the run's priority picks the step pod's class (issue 19) --------

BANDS = ((100, "taskforge-urgent"), (-1000, "taskforge-batch"), (10, "taskforge-high"))


@pytest.mark.parametrize(
    ("priority", "expected"),
    [(1000, "taskforge-urgent"), (100, "taskforge-urgent"), (99, "taskforge-high"),
     (10, "taskforge-high"), (0, "taskforge-batch"), (-1000, "taskforge-batch")],
)
def test_the_highest_band_the_priority_reaches_names_the_class(
    priority: int, expected: str
) -> None:
    settings = JobSettings(priority_classes=BANDS)
    run = RunRef(name="r", namespace="ns", uid="u", priority=priority)
    assert pod_of(build_job(action(), run, settings))["spec"]["priorityClassName"] == expected


def test_below_every_band_or_without_bands_no_class_is_set() -> None:
    high_only = JobSettings(priority_classes=((50, "hi"),))
    for settings, priority in ((high_only, 49), (JobSettings(), 1000)):
        run = RunRef(name="r", namespace="ns", uid="u", priority=priority)
        assert "priorityClassName" not in pod_of(build_job(action(), run, settings))["spec"]


def test_a_class_named_in_spec_pod_wins_over_the_bands_which_win_over_chart_defaults() -> None:
    chart = PodSettings.model_validate({"priorityClassName": "chart-default"},
                                       context={"trusted": True})
    settings = JobSettings(priority_classes=((0, "band"),), pod_defaults=chart)
    run = RunRef(name="r", namespace="ns", uid="u", priority=5)
    assert pod_of(build_job(action(), run, settings))["spec"]["priorityClassName"] == "band"
    own = build_job(action(pod={"priorityClassName": "mine"}), run, settings)
    assert pod_of(own)["spec"]["priorityClassName"] == "mine"


def test_the_bands_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFORGE_STEP_PRIORITY_CLASSES",
                       json.dumps([{"minPriority": 100, "className": "urgent"}]))
    assert OperatorConfig.from_env().jobs.priority_classes == ((100, "urgent"),)


@pytest.mark.parametrize(
    ("value", "says"),
    [('[{"minPriority": 100, "className": "Not_A_Name"}]', "0.className"),
     ('[{"minPriority": 5000, "className": "x"}]', "0.minPriority"),
     ('[{"minPriority": 1, "className": "x", "value": 3}]', "0.value"),
     ('[{"minPriority": 1, "className": "a"}, {"minPriority": 1, "className": "b"}]',
      "same minPriority"),
     ('{"minPriority": 1}', "valid array")],
)
def test_bad_bands_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setenv("TASKFORGE_STEP_PRIORITY_CLASSES", value)
    with pytest.raises(SettingsError, match="TASKFORGE_STEP_PRIORITY_CLASSES") as info:
        OperatorConfig.from_env()
    assert says in str(info.value)
