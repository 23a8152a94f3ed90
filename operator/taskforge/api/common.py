"""Building blocks shared by the resources: the base model, names, env vars, conditions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

StepName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=40, pattern=DNS_LABEL_PATTERN),
    Field(
        description="Step name: a DNS label (lower-case letters, digits and '-', starting and"
        " ending with a letter or digit), at most 40 characters."
    ),
]
ResourceName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
]
MapKey = Annotated[str, StringConstraints(min_length=1, max_length=253)]
"""A key of a string map. crdgen turns its `propertyNames` bound into a CEL rule (structural
schemas have no `propertyNames`)."""

# Keys of the CRD's OpenAPI extensions. They go into the models through `json_schema_extra`, so
# each CEL rule sits next to the pydantic validator it mirrors; crdgen copies them into crds/.
K8S_VALIDATIONS = "x-kubernetes-validations"
K8S_LIST_TYPE = "x-kubernetes-list-type"
K8S_LIST_MAP_KEYS = "x-kubernetes-list-map-keys"


def cel_rule(
    rule: str,
    message: str | None = None,
    *,
    message_expression: str | None = None,
    field_path: str | None = None,
    reason: str | None = None,
) -> JsonDict:
    """One `x-kubernetes-validations` entry: a CEL rule the apiserver checks at apply time."""
    out: JsonDict = {"rule": rule}
    if message is not None:
        out["message"] = message
    if message_expression is not None:
        out["messageExpression"] = message_expression
    if field_path is not None:
        out["fieldPath"] = field_path
    if reason is not None:
        out["reason"] = reason
    return out


def k8s_validations(*rules: JsonDict) -> JsonDict:
    """`json_schema_extra` carrying CEL rules into the CRD (pydantic itself ignores them)."""
    out: list[JsonValue] = [*rules]
    return {K8S_VALIDATIONS: out}


def list_map(*keys: str) -> JsonDict:
    """`json_schema_extra` of a list whose items are keyed, like Kubernetes' own name-keyed lists.

    The apiserver rejects two items with the same key, and server-side apply merges by key.
    """
    out: list[JsonValue] = [*keys]
    return {K8S_LIST_TYPE: "map", K8S_LIST_MAP_KEYS: out}


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
    """A key of a Secret in the run's namespace; the value never enters status, events or logs."""

    name: ResourceName = Field(description="Name of a Secret in the run's namespace.")
    key: str = Field(min_length=1, max_length=253, description="Key within the Secret.")


class ConfigMapKeyRef(Model):
    """A key of a ConfigMap in the run's namespace."""

    name: ResourceName = Field(description="Name of a ConfigMap in the run's namespace.")
    key: str = Field(min_length=1, max_length=253, description="Key within the ConfigMap.")


class EnvVarSource(Model):
    """Where an environment variable's value comes from; set one of the two."""

    secret_key_ref: SecretKeyRef | None = Field(
        default=None, description="Take the value from a Secret; it never enters status or logs."
    )
    config_map_key_ref: ConfigMapKeyRef | None = Field(
        default=None, description="Take the value from a ConfigMap."
    )


class EnvVar(Model):
    """An environment variable of the step's container: a literal value or one read at pod start."""

    name: str = Field(
        min_length=1,
        max_length=128,
        pattern=ENV_NAME_PATTERN,
        description="Variable name: letters, digits and '_', not starting with a digit.",
    )
    value: str | None = Field(
        default=None, max_length=32768, description="A literal value (templates allowed)."
    )
    value_from: EnvVarSource | None = Field(
        default=None, description="Read the value from a Secret or ConfigMap at pod start."
    )


Quantity = Annotated[str, StringConstraints(max_length=64)]


class ResourceRequirements(Model):
    """CPU and memory of the step's container, as Kubernetes quantities written as strings."""

    requests: dict[MapKey, Quantity] | None = Field(
        default=None,
        max_length=16,
        description="Minimum resources, e.g. {cpu: 100m, memory: 64Mi}.",
    )
    limits: dict[MapKey, Quantity] | None = Field(
        default=None,
        max_length=16,
        description="Maximum resources, e.g. {cpu: '1', memory: 256Mi}.",
    )


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(Model):
    """A condition as in the Kubernetes API conventions, so `kubectl wait` and GitOps read it."""

    type: str = Field(description="Condition type, e.g. Succeeded, Valid, Ready.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="A CamelCase word saying why, for programs to act on.")
    message: str = Field(default="", description="A sentence for people, with the details.")
    last_transition_time: datetime = Field(description="When status last changed.")
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation this condition was computed from."
    )
