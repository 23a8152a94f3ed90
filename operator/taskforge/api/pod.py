"""Step pod settings: what a platform team sets on the pods of step Jobs.

One model, `PodSettings`, at three levels: the chart's defaults (operator settings, trusted: the
cluster admin wrote them), the Workflow's `spec.pod` and a step's `pod`. engine/podsettings.py
merges them (the more specific level wins) and engine/authority.py lists what each asks of the
run's authority: a run may only do with its pods what the person it acts for could do directly.

Pods stay `restricted` (Pod Security Standards) whatever is set here: the volume types are the
four `restricted` allows and nothing here touches the security context. The one setting that
loosens Taskforge's own defaults is `automountServiceAccountToken`, off unless set true.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from taskforge.api.common import (
    DNS_LABEL_PATTERN,
    MapKey,
    Model,
    ResourceName,
    ResourceRequirements,
    cel_rule,
    k8s_validations,
    list_map,
)

VolumeName = Annotated[str, StringConstraints(min_length=1, max_length=63,
                                              pattern=DNS_LABEL_PATTERN)]
LabelValue = Annotated[str, StringConstraints(max_length=63,
                                              pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")]
AnnotationValue = Annotated[str, StringConstraints(max_length=4096)]
RESERVED_VOLUME = "tmp"
"""Every step pod has an emptyDir `tmp` at /tmp (the root filesystem is read-only)."""
RESERVED_PATHS = ("/tmp", "/dev/termination-log")
_QUALIFIED_NAME = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
RESERVED_KEY_DOMAINS = ("kubernetes.io/", "k8s.io/", "taskforge.io/")
"""Label and annotation keys in these domains are refused in workflows: Kubernetes reads some
of them as security settings (an AppArmor profile annotation can loosen `restricted`), and the
taskforge.io ones are the operator's. An admin can still set them in the chart's defaults."""


def reserved_key(key: str) -> bool:
    prefix, _, _ = key.rpartition("/")
    domain = f"{prefix}/" if prefix else ""
    return any(domain == d or domain.endswith("." + d) for d in RESERVED_KEY_DOMAINS)


class LocalObjectReference(Model):
    """An object in the run's namespace, by name."""

    name: ResourceName = Field(description="Name of the object.")


class Toleration(Model):
    """A toleration, as in a pod spec: lets the step pod run on nodes with matching taints."""

    key: str | None = Field(default=None, max_length=317, pattern=_QUALIFIED_NAME,
                            description="Taint key; empty with operator Exists: every taint.")
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal (the default).")
    value: str | None = Field(default=None, max_length=63, description="Taint value (Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="NoSchedule, PreferNoSchedule or NoExecute; empty: all.")
    toleration_seconds: int | None = Field(
        default=None, ge=0, description="How long a NoExecute taint is tolerated.")


class Affinity(Model):
    """Node and pod (anti-)affinity, in the pod spec's own form. Checked by the API server when
    the Job is created; a malformed term fails the run with the server's message."""

    node_affinity: dict[str, Any] | None = Field(
        default=None, max_length=4, description="nodeAffinity, as in a pod spec.")
    pod_affinity: dict[str, Any] | None = Field(
        default=None, max_length=4, description="podAffinity, as in a pod spec.")
    pod_anti_affinity: dict[str, Any] | None = Field(
        default=None, max_length=4, description="podAntiAffinity, as in a pod spec.")


class KeyToPath(Model):
    """One key of a ConfigMap or Secret, as a file."""

    key: str = Field(min_length=1, max_length=253, description="The key.")
    path: str = Field(min_length=1, max_length=1024, pattern=r"^[^/]",
                      description="Relative file path; no '..'.")
    mode: int | None = Field(default=None, ge=0, le=0o777, description="File mode, e.g. 0444.")

    @field_validator("path")
    @classmethod
    def _no_dotdot(cls, value: str) -> str:
        if ".." in value.split("/"):
            raise ValueError("must not contain '..'")
        return value


class ConfigMapVolume(Model):
    """A ConfigMap's keys as files. Its name is checked for the run's authority (get)."""

    name: ResourceName = Field(description="ConfigMap in the run's namespace.")
    items: list[KeyToPath] | None = Field(default=None, max_length=64,
                                          description="Keys to project; default: all.")
    optional: bool | None = Field(default=None, description="The pod starts without it.")
    default_mode: int | None = Field(default=None, ge=0, le=0o777, description="File mode.")


class SecretVolume(Model):
    """A Secret's keys as files. Its name is checked for the run's authority (get)."""

    secret_name: ResourceName = Field(description="Secret in the run's namespace.")
    items: list[KeyToPath] | None = Field(default=None, max_length=64,
                                          description="Keys to project; default: all.")
    optional: bool | None = Field(default=None, description="The pod starts without it.")
    default_mode: int | None = Field(default=None, ge=0, le=0o777, description="File mode.")


class EmptyDirVolume(Model):
    """Scratch space that lives as long as the pod."""

    medium: Literal["", "Memory"] | None = Field(default=None, description="'' or Memory.")
    size_limit: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="Largest size, e.g. 1Gi.")


class PvcVolume(Model):
    """A PersistentVolumeClaim. Its name is checked for the run's authority (get), and
    mounting one takes the right to create pods."""

    claim_name: ResourceName = Field(description="Claim in the run's namespace.")
    read_only: bool | None = Field(default=None, description="Mount read-only.")


VOLUME_TYPES = ("configMap", "secret", "emptyDir", "persistentVolumeClaim")


class Volume(Model):
    """A volume of the step pod: exactly one of configMap, secret, emptyDir,
    persistentVolumeClaim (the types the `restricted` Pod Security Standard allows)."""

    model_config = ConfigDict(json_schema_extra=k8s_validations(cel_rule(
        "[" + ", ".join(f"has(self.{t})" for t in VOLUME_TYPES) + "].filter(t, t).size() == 1",
        message_expression="'volume ' + self.name + ' must set exactly one of "
        + ", ".join(VOLUME_TYPES) + "'",
    )))

    name: VolumeName = Field(description="Volume name (a DNS label); not 'tmp' (Taskforge's).")
    config_map: ConfigMapVolume | None = Field(default=None, description="A ConfigMap.")
    secret: SecretVolume | None = Field(default=None, description="A Secret.")
    empty_dir: EmptyDirVolume | None = Field(default=None, description="Scratch space.")
    persistent_volume_claim: PvcVolume | None = Field(default=None, description="A claim.")

    @model_validator(mode="after")
    def _one_type(self) -> Volume:
        chosen = [t for t in ("config_map", "secret", "empty_dir", "persistent_volume_claim")
                  if getattr(self, t) is not None]
        if len(chosen) != 1:
            raise ValueError(f"volume {self.name!r} must set exactly one of "
                             f"{', '.join(VOLUME_TYPES)}")
        if self.name == RESERVED_VOLUME:
            raise ValueError(f"volume name {RESERVED_VOLUME!r} is Taskforge's (/tmp)")
        return self


class VolumeMount(Model):
    """Where the step's container sees a volume."""

    name: VolumeName = Field(description="A volume of the workflow's or the step's pod.")
    mount_path: str = Field(min_length=2, max_length=1024, pattern=r"^/[^:]*$",
                            description="Absolute path; not /tmp or /dev/termination-log.")
    read_only: bool | None = Field(default=None, description="Mount read-only.")
    sub_path: str | None = Field(default=None, max_length=1024, pattern=r"^[^/]",
                                 description="A relative path inside the volume; no '..'.")

    @model_validator(mode="after")
    def _paths(self) -> VolumeMount:
        if self.mount_path.rstrip("/") in RESERVED_PATHS:
            raise ValueError(f"mountPath {self.mount_path!r} is Taskforge's")
        if self.sub_path is not None and ".." in self.sub_path.split("/"):
            raise ValueError("subPath must not contain '..'")
        return self


class PodSettings(Model):
    """Settings of the step pods: spec.pod applies to every step, a step's pod to that step
    (the more specific wins; maps and named lists are merged). Anything that names an object
    or lets the pod do more is checked against the run's creator before the run starts."""

    service_account_name: ResourceName | None = Field(
        default=None,
        description="Service account of the pod. Its token is mounted only with"
        " automountServiceAccountToken; the run's authority must be allowed to create tokens"
        " for it (serviceaccounts/token) and to create pods.")
    automount_service_account_token: bool | None = Field(
        default=None,
        description="Mount the service account's token (default false: step pods have no API"
        " access). Loosens Taskforge's default: say so explicitly.")
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        default=None, max_length=16, json_schema_extra=list_map("name"),
        description="Secrets with registry credentials (the authority must be allowed to get"
        " each).")
    node_selector: dict[MapKey, LabelValue] | None = Field(
        default=None, max_length=32, description="Node labels the pod's node must have.")
    tolerations: list[Toleration] | None = Field(
        default=None, max_length=32, description="Taints the pod tolerates.")
    affinity: Affinity | None = Field(default=None, description="Node and pod affinity.")
    priority_class_name: ResourceName | None = Field(
        default=None, description="PriorityClass of the pod.")
    resources: ResourceRequirements | None = Field(
        default=None, description="Requests and limits of the step's container (a container"
        " step's own resources win).")
    labels: dict[MapKey, LabelValue] | None = Field(
        default=None, max_length=32,
        description="Labels of the pod; not in the kubernetes.io, k8s.io or taskforge.io"
        " domains.")
    annotations: dict[MapKey, AnnotationValue] | None = Field(
        default=None, max_length=32,
        description="Annotations of the pod; not in the kubernetes.io, k8s.io or taskforge.io"
        " domains (some are security settings).")
    volumes: list[Volume] | None = Field(
        default=None, max_length=16, json_schema_extra=list_map("name"),
        description="Volumes: configMap, secret, emptyDir or persistentVolumeClaim.")
    volume_mounts: list[VolumeMount] | None = Field(
        default=None, max_length=16, json_schema_extra=list_map("mountPath"),
        description="Mounts of those volumes into the step's container.")

    @model_validator(mode="after")
    def _keys(self, info: ValidationInfo) -> PodSettings:
        """Keys must be well formed; reserved domains only where the context says `trusted`
        (the chart's defaults, which the cluster admin wrote)."""
        trusted = bool(info.context and info.context.get("trusted"))
        for field, values in (("labels", self.labels), ("annotations", self.annotations),
                              ("nodeSelector", self.node_selector)):
            for key in values or {}:
                if not _qualified(key):
                    raise ValueError(f"{field}: {key!r} is not a valid key (prefix/name)")
                if not trusted and field != "nodeSelector" and reserved_key(key):
                    raise ValueError(
                        f"{field}: {key!r} is in a reserved domain ("
                        f"{', '.join(d.rstrip('/') for d in RESERVED_KEY_DOMAINS)}); an admin"
                        " can set it in the chart's stepPodDefaults")
        return self


def _qualified(key: str) -> bool:
    return len(key) <= 317 and re.fullmatch(_QUALIFIED_NAME, key) is not None


def unmounted_names(workflow: PodSettings | None, step: PodSettings | None) -> list[str]:
    """Mounts (of either level) that name no volume of either level, for a clear error at apply.

    A step's mount may use the workflow's volume and the other way round; the chart's defaults
    bring their own volumes and mounts, so a workflow cannot lean on them.
    """
    volumes = {v.name for p in (workflow, step) if p for v in p.volumes or ()}
    return [m.name for p in (workflow, step) if p for m in p.volume_mounts or ()
            if m.name not in volumes]
