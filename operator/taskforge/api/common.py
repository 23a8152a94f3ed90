"""Building blocks shared by the resources: the base model, names, env vars, conditions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

StepName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=40, pattern=DNS_LABEL_PATTERN),
    Field(description="A DNS label (lower case letters, digits and '-'), at most 40 characters."),
]
ResourceName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
]


class Model(BaseModel):
    """Base of every resource model: camelCase on the wire, strict about unknown fields.

    `extra="forbid"` mirrors the CRD's structural schema, so the executor and the
    offline `taskforge validate` reject the same typos that `kubectl apply` does.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        serialize_by_alias=True,
    )

    def to_k8s(self) -> dict[str, Any]:
        """The wire form: camelCase keys, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class SecretKeyRef(Model):
    name: ResourceName = Field(description="Name of a Secret in the run's namespace.")
    key: str = Field(min_length=1, max_length=253, description="Key within the Secret.")


class ConfigMapKeyRef(Model):
    name: ResourceName = Field(description="Name of a ConfigMap in the run's namespace.")
    key: str = Field(min_length=1, max_length=253, description="Key within the ConfigMap.")


class EnvVarSource(Model):
    secret_key_ref: SecretKeyRef | None = Field(
        default=None, description="Take the value from a Secret; it never enters status or logs."
    )
    config_map_key_ref: ConfigMapKeyRef | None = Field(
        default=None, description="Take the value from a ConfigMap."
    )


class EnvVar(Model):
    name: str = Field(
        min_length=1, max_length=128, pattern=ENV_NAME_PATTERN, description="Variable name."
    )
    value: str | None = Field(default=None, description="A literal value (templates allowed).")
    value_from: EnvVarSource | None = Field(
        default=None, description="Read the value from a Secret or ConfigMap at pod start."
    )


class ResourceRequirements(Model):
    requests: dict[str, str] | None = Field(
        default=None, description="Minimum resources, e.g. {cpu: 100m, memory: 64Mi}."
    )
    limits: dict[str, str] | None = Field(
        default=None, description="Maximum resources, e.g. {cpu: '1', memory: 256Mi}."
    )


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(Model):
    """A condition as in the Kubernetes API conventions, so `kubectl wait` and GitOps read it."""

    type: str = Field(description="Condition type, e.g. Succeeded, Valid, Ready.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="A CamelCase word saying why.")
    message: str = Field(default="", description="A sentence for people.")
    last_transition_time: datetime = Field(description="When status last changed.")
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation this condition was computed from."
    )
