"""Jobs and pods: the manifest for a step attempt, and what a Job and its pod tell us.

Building a manifest is a pure function of the engine's CreateJob action and the
operator's settings; reading a Job back into an ObservedJob is too. The calls
that create and delete Jobs live in `kube.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from taskforge_executor.contract import EXECUTOR_COMMAND, encode_step, secret_env

from taskforge import API_VERSION
from taskforge.api.durations import parse_timestamp
from taskforge.api.pod import PodSettings
from taskforge.engine.actions import CreateJob
from taskforge.engine.facts import JobFailure, ObservedJob
from taskforge.engine.podsettings import (
    merge_pod_settings,
    pod_spec_fields,
    priority_class_for,
)

LABEL_WORKFLOW = "taskforge.io/workflow"
LABEL_RUN = "taskforge.io/run"
LABEL_STEP = "taskforge.io/step"
LABEL_ATTEMPT = "taskforge.io/attempt"
LABEL_ITEM = "taskforge.io/item"
TERMINATION_PATH = "/dev/termination-log"
NON_ROOT_UID = 65532


@dataclass(frozen=True)
class JobSettings:
    executor_image: str = "ghcr.io/taskforge/taskforge-executor:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    ttl_seconds_after_finished: int | None = 600
    default_requests: dict[str, str] = field(
        default_factory=lambda: {"cpu": "50m", "memory": "64Mi"}
    )
    default_limits: dict[str, str] = field(default_factory=lambda: {"memory": "256Mi"})
    pod_defaults: PodSettings | None = None
    """The chart's stepPodDefaults (TASKFORGE_STEP_POD_DEFAULTS), under every workflow's."""
    log_format: str = "text"
    """`json`: the executor logs JSON lines too, with the run's fields (TASKFORGE_LOG_FORMAT)."""
    priority_classes: tuple[tuple[int, str], ...] = ()
    """(minPriority, className) bands: the chart's stepPriorityClasses
    (TASKFORGE_STEP_PRIORITY_CLASSES)."""


@dataclass(frozen=True)
class RunRef:
    """The owner every Job points at, so deleting a run removes its Jobs."""

    name: str
    namespace: str
    uid: str
    priority: int = 0
    """The run's effective priority (engine/timing.effective_priority), for the class bands."""


def _env_from_spec(entries: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Container env entries from the API's EnvVar form (value or valueFrom)."""
    out: list[dict[str, Any]] = []
    for entry in entries or []:
        if "valueFrom" in entry:
            out.append({"name": entry["name"], "valueFrom": entry["valueFrom"]})
        else:
            out.append({"name": entry["name"], "value": str(entry.get("value", ""))})
    return out


def _pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": NON_ROOT_UID,
        "runAsGroup": NON_ROOT_UID,
        "fsGroup": NON_ROOT_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security(read_only_root: bool) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _resources(settings: JobSettings, pod: PodSettings | None) -> dict[str, Any]:
    """The built-in defaults, with the merged pod settings' requests and limits over them."""
    given = pod.resources if pod is not None else None
    return {
        "requests": {**settings.default_requests, **((given.requests or {}) if given else {})},
        "limits": {**settings.default_limits, **((given.limits or {}) if given else {})},
    }


def _mounts(pod: PodSettings | None) -> list[dict[str, Any]]:
    extra = [m.to_k8s() for m in (pod.volume_mounts or ())] if pod is not None else []
    return [{"name": "tmp", "mountPath": "/tmp"}, *extra]


def _executor_container(
    action: CreateJob, run: RunRef, settings: JobSettings, pod: PodSettings | None
) -> dict[str, Any]:
    # Kubernetes expands $(VAR) in env values and turns $$ into $: escape every $ so
    # the step's config reaches the executor byte for byte.
    step_json = encode_step(action.step, action.step_type, action.config).replace("$", "$$")
    env: list[dict[str, Any]] = [
        {"name": "TASKFORGE_STEP", "value": step_json},
        {"name": "TASKFORGE_RUN", "value": run.name},
        {"name": "TASKFORGE_NAMESPACE", "value": run.namespace},
        {"name": "TASKFORGE_ATTEMPT", "value": str(action.attempt)},
        {"name": "TMPDIR", "value": "/tmp"},
    ]
    if settings.log_format == "json":
        env += [{"name": "TASKFORGE_LOG_FORMAT", "value": "json"},
                {"name": "TASKFORGE_WORKFLOW", "value": action.labels.get(LABEL_WORKFLOW, "")}]
    for env_name, secret_name, secret_key in secret_env(action.step_type, action.config):
        env.append(
            {
                "name": env_name,
                "valueFrom": {"secretKeyRef": {"name": secret_name, "key": secret_key}},
            }
        )
    if action.step_type == "script":
        # Secret-backed entries came from secret_env; ConfigMap-backed ones are wired here.
        env.extend(
            e
            for e in _env_from_spec(action.config.get("env"))
            if "configMapKeyRef" in e.get("valueFrom", {})
        )
    return {
        "name": "step",
        "image": settings.executor_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [EXECUTOR_COMMAND],
        "env": env,
        "resources": _resources(settings, pod),
        "securityContext": _container_security(read_only_root=True),
        "terminationMessagePath": TERMINATION_PATH,
        "terminationMessagePolicy": "File",
        "volumeMounts": _mounts(pod),
    }


def _user_container(
    action: CreateJob, settings: JobSettings, pod: PodSettings | None
) -> dict[str, Any]:
    cfg = action.config
    resources = cfg.get("resources") or _resources(settings, pod)
    container: dict[str, Any] = {
        "name": "step",
        "image": cfg["image"],
        "imagePullPolicy": settings.image_pull_policy,
        "env": _env_from_spec(cfg.get("env")),
        "resources": resources,
        # User images often write outside /tmp; the rest of `restricted` still applies.
        "securityContext": _container_security(read_only_root=False),
        "terminationMessagePath": TERMINATION_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": _mounts(pod),
    }
    for key in ("command", "args", "workingDir"):
        if cfg.get(key) is not None:
            container[key] = cfg[key]
    return container


def build_job(action: CreateJob, run: RunRef, settings: JobSettings) -> dict[str, Any]:
    """The batch/v1 Job for one step attempt (see DESIGN.md, "Jobs are idempotent").

    The pod settings (the chart's defaults under the workflow's and the step's) add to it;
    they never replace the security context, Taskforge's labels or its /tmp volume.
    """
    pod = merge_pod_settings(settings.pod_defaults, action.pod)
    if action.step_type == "container":
        container = _user_container(action, settings, pod)
    else:
        container = _executor_container(action, run, settings, pod)
    labels = dict(action.labels)
    metadata: dict[str, Any] = {
        "labels": {**((pod.labels or {}) if pod else {}), **labels}}
    if pod is not None and pod.annotations:
        metadata["annotations"] = dict(pod.annotations)
    volumes = [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}]
    volumes += [v.to_k8s() for v in (pod.volumes or ())] if pod is not None else []
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "template": {
            "metadata": metadata,
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                **pod_spec_fields(pod),
                "securityContext": _pod_security(),
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
    # The bands pick the class unless the workflow or the step named one (spec.pod): an
    # explicit choice, which the run's authority check has allowed, wins over the chart's.
    band = priority_class_for(run.priority, settings.priority_classes)
    if band is not None and (action.pod is None or action.pod.priority_class_name is None):
        spec["template"]["spec"]["priorityClassName"] = band
    if action.timeout_seconds is not None:
        spec["activeDeadlineSeconds"] = max(1, int(action.timeout_seconds))
    if settings.ttl_seconds_after_finished is not None:
        spec["ttlSecondsAfterFinished"] = settings.ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": action.job_name,
            "namespace": run.namespace,
            "labels": labels,
            "annotations": {"taskforge.io/step-type": action.step_type},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "WorkflowRun",
                    "name": run.name,
                    "uid": run.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }



def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        if "terminated" in state:
            return dict(state["terminated"])
    return None


def _waiting_failure(pod: dict[str, Any]) -> str | None:
    """A pod that will never start (bad image and the like) is a PodFailure."""
    status = pod.get("status") or {}
    for cstatus in status.get("containerStatuses") or []:
        waiting = (cstatus.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in {"ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                                     "CreateContainerConfigError", "ErrImageNeverPull"}:
            return f"{waiting.get('reason')}: {waiting.get('message', '')}".strip()
    return None


def _item(value: Any) -> int | None:
    """The forEach item of a Job (label taskforge.io/item), None for a plain step's Job."""
    if not isinstance(value, str) or not value.isdigit() or len(value) > 6:
        return None
    return int(value)


def observe_job(job: dict[str, Any], pods: list[dict[str, Any]]) -> ObservedJob:
    """What one step attempt looks like now, from its Job and its pod.

    The pod is read first: its terminated state arrives before the Job
    controller marks the Job complete, and acting on it is what makes the
    step hand-off fast. A pod that is being deleted is not trusted (a Job
    killed for its deadline ends its pod with SIGTERM): the Job's condition
    says what happened then.
    """
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    status = job.get("status") or {}
    base = {
        "name": meta.get("name", ""),
        "step": labels.get(LABEL_STEP, ""),
        "attempt": int(labels.get(LABEL_ATTEMPT, "1")),
        "started_at": parse_timestamp(status.get("startTime")),
        "item": _item(labels.get(LABEL_ITEM)),
    }
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if
                  c.get("status") == "True"}
    pod = pods[-1] if pods else None
    term = _terminated(pod) if pod else None
    message = term.get("message") if term else None
    exit_code = term.get("exitCode") if term else None
    finished = parse_timestamp(term.get("finishedAt") if term else status.get("completionTime"))

    failed = conditions.get("Failed") or conditions.get("FailureTarget")
    if failed is not None and failed.get("reason") == "DeadlineExceeded":
        return ObservedJob(**base, state="Failed", failure="TimedOut", exit_code=exit_code,
                           termination_message=message, finished_at=finished)
    pod_deleting = bool(pod and (pod.get("metadata") or {}).get("deletionTimestamp"))
    if term is not None and not pod_deleting:
        if exit_code == 0:
            return ObservedJob(**base, state="Succeeded", exit_code=0,
                               termination_message=message, finished_at=finished)
        pod_reason = (pod or {}).get("status", {}).get("reason")
        kind: JobFailure = "TimedOut" if pod_reason == "DeadlineExceeded" else "Failed"
        if term.get("reason") in {"LocalAgentCannotRunImage", "ContainerCannotRun", "OOMKilled"}:
            kind = "PodFailure"
        return ObservedJob(**base, state="Failed", failure=kind, exit_code=exit_code,
                           termination_message=message or term.get("reason"),
                           finished_at=finished)
    if pod is not None and not pod_deleting:
        stuck = _waiting_failure(pod)
        if stuck:
            return ObservedJob(**base, state="Failed", failure="PodFailure",
                               termination_message=json.dumps({"ok": False, "error": stuck}))
    if "Complete" in conditions or "SuccessCriteriaMet" in conditions:
        return ObservedJob(**base, state="Succeeded", exit_code=0,
                           termination_message=message, finished_at=finished)
    if failed is not None:
        reason = failed.get("reason", "Failed")
        text = message or json.dumps({"ok": False, "error": f"job failed: {reason}"})
        return ObservedJob(**base, state="Failed", failure="PodFailure", exit_code=exit_code,
                           termination_message=text, finished_at=finished)
    return ObservedJob(**base, state="Active")
