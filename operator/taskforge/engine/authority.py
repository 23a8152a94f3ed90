"""Whose rights a run uses, and which objects it reaches with them.

The operator creates a run's Jobs with its own service account, which may read every Secret
its step pods name. Without a check, anyone allowed to create a WorkflowRun could have a step
print a Secret they cannot read themselves (a confused deputy). So a run uses only the rights
of a person: the user who created it, recorded at admission; or, for runs the operator itself
created (cron, webhook triggers), the last writer of the Workflow, recorded the same way. Before
the first Job, the operator asks the API server (SubjectAccessReview) whether that person may
`get` every Secret and ConfigMap the steps name; one refusal fails the run with `Forbidden`.

This module holds the pure parts: the annotation format, the choice of authority, and the
list of references. Asking the API server is `adapters/authz.py`'s job.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from taskforge.api.common import EnvVar
from taskforge.api.pod import PodSettings
from taskforge.api.steps import Step
from taskforge.api.workflow import WorkflowSpec

CREATOR_ANNOTATION = "taskforge.io/creator"
"""On a WorkflowRun: the user who created it, as the API server authenticated them."""
LAST_WRITER_ANNOTATION = "taskforge.io/last-writer"
"""On a Workflow: the user who last created or changed it."""
MAX_GROUPS = 64
MAX_EXTRA_VALUES = 16
MAX_ANNOTATION_BYTES = 16 * 1024

Resource = Literal["secrets", "configmaps", "persistentvolumeclaims", "serviceaccounts", "pods"]


@dataclass(frozen=True)
class Identity:
    """A user as the API server's admission request described them (`userInfo`)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def to_annotation(self) -> str:
        data: dict[str, Any] = {"username": self.username}
        if self.uid:
            data["uid"] = self.uid
        if self.groups:
            data["groups"] = list(self.groups)
        if self.extra:
            data["extra"] = {k: list(v) for k, v in self.extra}
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    def review_fields(self) -> dict[str, Any]:
        """The user part of a SubjectAccessReview spec."""
        spec: dict[str, Any] = {"user": self.username, "groups": list(self.groups)}
        if self.uid:
            spec["uid"] = self.uid
        if self.extra:
            spec["extra"] = {k: list(v) for k, v in self.extra}
        return spec


def identity_from_userinfo(info: Mapping[str, Any] | None) -> Identity | None:
    """The identity in an admission request's `userInfo`, bounded so it fits an annotation."""
    if not info or not info.get("username"):
        return None
    extra_raw = info.get("extra") or {}
    extra = tuple(
        sorted(
            (str(k), tuple(str(v) for v in (vals or ())[:MAX_EXTRA_VALUES]))
            for k, vals in extra_raw.items()
        )
    )
    return Identity(
        username=str(info["username"]),
        uid=str(info.get("uid") or ""),
        groups=tuple(str(g) for g in (info.get("groups") or ())[:MAX_GROUPS]),
        extra=extra[:MAX_EXTRA_VALUES],
    )


def identity_from_annotation(value: str | None) -> Identity | None:
    """Parse an annotation written by `to_annotation`; None when absent or malformed."""
    if not value or len(value) > MAX_ANNOTATION_BYTES:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return identity_from_userinfo(data)


@dataclass(frozen=True)
class Reference:
    """What a step's pod does with the operator's rights, and the field that asks for it: read
    an object (get), or something only a pod's creator may (create pods, create a token)."""

    resource: Resource
    name: str
    field: str
    verb: str = "get"
    subresource: str = ""

    def describe(self) -> str:
        target = "/".join(p for p in (self.resource, self.name, self.subresource) if p)
        return f"{self.verb} {target}"


def _env_refs(env: Iterable[EnvVar] | None, path: str) -> list[Reference]:
    refs: list[Reference] = []
    for i, var in enumerate(env or ()):
        source = var.value_from
        if source is None:
            continue
        if source.secret_key_ref is not None:
            refs.append(Reference("secrets", source.secret_key_ref.name,
                                  f"{path}.env[{i}].valueFrom.secretKeyRef"))
        if source.config_map_key_ref is not None:
            refs.append(Reference("configmaps", source.config_map_key_ref.name,
                                  f"{path}.env[{i}].valueFrom.configMapKeyRef"))
    return refs


def _step_refs(step: Step, path: str) -> list[Reference]:
    refs: list[Reference] = []
    if step.script is not None:
        refs += _env_refs(step.script.env, f"{path}.script")
    if step.container is not None:
        refs += _env_refs(step.container.env, f"{path}.container")
    if step.http is not None:
        for i, header in enumerate(step.http.headers or ()):
            if header.value_from is not None:
                refs.append(Reference("secrets", header.value_from.secret_key_ref.name,
                                      f"{path}.http.headers[{i}].valueFrom.secretKeyRef"))
    if step.slack is not None:
        refs.append(Reference("secrets", step.slack.webhook_url_from.name,
                              f"{path}.slack.webhookUrlFrom"))
    if step.email is not None:
        for attr, key in (("username_from", "usernameFrom"), ("password_from", "passwordFrom")):
            ref = getattr(step.email, attr)
            if ref is not None:
                refs.append(Reference("secrets", ref.name, f"{path}.email.{key}"))
    return refs


def _pod_refs(pod: PodSettings | None, path: str) -> list[Reference]:
    """What pod settings ask of the run's authority (README, Step pod settings).

    Objects the pod reads are checked as `get` (Secret and ConfigMap volumes, pull secrets, a
    claim); a service account as `create serviceaccounts/token` (the pod acts as it, token
    mounted or not: pull secrets, cloud identity); and every setting that Kubernetes leaves to
    whoever may create a pod (a service account, a claim, scheduling, priority, labels that a
    NetworkPolicy may select, annotations) as `create pods`. Resources, emptyDir and the
    object-checked volumes need no more: they give nothing the person lacks.
    """
    if pod is None:
        return []
    refs: list[Reference] = []
    for i, secret in enumerate(pod.image_pull_secrets or ()):
        refs.append(Reference("secrets", secret.name, f"{path}.imagePullSecrets[{i}]"))
    for i, volume in enumerate(pod.volumes or ()):
        where = f"{path}.volumes[{i}]"
        if volume.secret is not None:
            refs.append(Reference("secrets", volume.secret.secret_name, f"{where}.secret"))
        if volume.config_map is not None:
            refs.append(Reference("configmaps", volume.config_map.name, f"{where}.configMap"))
        if volume.persistent_volume_claim is not None:
            refs.append(Reference("persistentvolumeclaims",
                                  volume.persistent_volume_claim.claim_name,
                                  f"{where}.persistentVolumeClaim"))
    account = pod.service_account_name
    if account is not None or pod.automount_service_account_token:
        refs.append(Reference("serviceaccounts", account or "default",
                              f"{path}.serviceAccountName", verb="create",
                              subresource="token"))
    pod_level = [name for name, value in (
        ("serviceAccountName", account), ("automountServiceAccountToken",
                                           pod.automount_service_account_token),
        ("imagePullSecrets", pod.image_pull_secrets), ("nodeSelector", pod.node_selector),
        ("tolerations", pod.tolerations), ("affinity", pod.affinity),
        ("priorityClassName", pod.priority_class_name), ("labels", pod.labels),
        ("annotations", pod.annotations),
        ("volumes", [v for v in pod.volumes or () if v.persistent_volume_claim is not None]),
    ) if value]
    if pod_level:
        refs.append(Reference("pods", "", f"{path}.{pod_level[0]}", verb="create"))
    return refs


def references(spec: WorkflowSpec) -> tuple[Reference, ...]:
    """Everything the run's pods would read or do with the operator's rights, in spec order."""
    refs: list[Reference] = _pod_refs(spec.pod, "spec.pod")
    for field, group in (("steps", spec.steps), ("finally", spec.finally_steps or ())):
        for i, step in enumerate(group):
            refs += _step_refs(step, f"spec.{field}[{i}]")
            refs += _pod_refs(step.pod, f"spec.{field}[{i}].pod")
    return tuple(refs)


@dataclass(frozen=True)
class Authority:
    """Whose rights a run uses, and why that person (for messages)."""

    identity: Identity | None
    source: str


def authority(
    creator: Identity | None,
    operator_username: str | None,
    workflow_name: str | None,
    workflow_writer: Identity | None,
) -> Authority:
    """The creator; for runs the operator created, the Workflow's last writer.

    A run carries no field that changes this: `spec.trigger` is set by whoever creates the
    run, so it cannot be trusted. Only the recorded creator counts, and the operator's own
    runs come from cron and webhook triggers, which act for the Workflow's author.
    """
    if creator is None:
        return Authority(None, "the run's creator is not recorded (is the taskforge admission"
                               " webhook installed?)")
    if operator_username is None or creator.username != operator_username:
        return Authority(creator, f"creator {creator.username!r}")
    if workflow_name is None:
        return Authority(creator, "the operator")
    if workflow_writer is None:
        return Authority(None, f"the last writer of workflow {workflow_name!r} is not recorded;"
                               " apply the workflow again")
    return Authority(workflow_writer,
                     f"{workflow_writer.username!r}, last writer of workflow {workflow_name!r}")


def denial_message(authority_: Authority, refused: Iterable[Reference]) -> str:
    """One sentence naming what was refused, the verb and the person."""
    refused = list(refused)
    if authority_.identity is None:
        first = refused[0]
        if first.verb == "get":
            return (f"{first.field} names {first.resource[:-1]} {first.name!r},"
                    f" but {authority_.source}")
        return f"{first.field} needs {first.describe()}, but {authority_.source}"
    parts = [f"{r.describe()} ({r.field})" for r in refused[:5]]
    more = f", and {len(refused) - 5} more" if len(refused) > 5 else ""
    return f"{authority_.source} may not " + ", ".join(parts) + more
