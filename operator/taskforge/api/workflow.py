"""The Workflow resource: what to run, and when."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from taskforge.api.common import (
    Condition,
    MapKey,
    Model,
    ResourceName,
    SecretKeyRef,
    cel_rule,
    k8s_validations,
    list_map,
)
from taskforge.api.durations import DURATION_PATTERN, Duration
from taskforge.api.pod import PodSettings, unmounted_names
from taskforge.api.sizes import (
    SPEC_TEXT_MAX_CHARS,
    TEXT_BUDGET_MESSAGE,
    spec_text,
    text_budget_rule,
)
from taskforge.api.steps import RetryPolicy, Step
from taskforge.api.timing import Priority

BodyPath = Annotated[str, StringConstraints(max_length=1024)]
OUTPUT_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_RUN_OUTPUTS = 50
OutputTemplate = Annotated[str, StringConstraints(max_length=4096)]
ParamType = Literal["string", "number", "integer", "boolean", "object", "array"]


class ParamSpec(Model):
    """A typed parameter: {{ params.NAME }} in templates, params.NAME in `when` conditions."""

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Parameter name: letters, digits and '_', not starting with a digit.",
    )
    type: ParamType = Field(
        default="string",
        description="JSON type the value must have: string, number, integer, boolean, object"
        " or array.",
    )
    default: Any = Field(
        default=None,
        description="Value used when a run does not set it. Any JSON: its size counts toward"
        " the run's size (see README, Limits).",
    )
    description: str | None = Field(
        default=None, max_length=1024, description="What the parameter is for."
    )
    required: bool = Field(
        default=False, description="A run must set it (ignored when there is a default)."
    )


class Schedule(Model):
    """Cron trigger with the exact semantics of a Kubernetes CronJob."""

    cron: str = Field(
        min_length=1,
        max_length=256,
        description="Cron expression as in a CronJob, e.g. '*/5 * * * *' or '@hourly'.",
    )
    timezone: str | None = Field(
        default=None, max_length=64, description="IANA time zone, e.g. Europe/Berlin; default UTC."
    )
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = Field(
        default="Allow",
        description="When the previous scheduled run is still active: Allow (start another),"
        " Forbid (skip this time) or Replace (cancel it and start a new one).",
    )
    starting_deadline_seconds: int | None = Field(
        default=None,
        ge=0,
        description="Skip a scheduled time that could not start within this many seconds.",
    )
    suspend: bool = Field(default=False, description="Start no new scheduled runs.")
    params: dict[str, Any] | None = Field(
        default=None, max_length=100, description="Parameter values of scheduled runs."
    )


class Webhook(Model):
    """Trigger by `POST /hooks/{namespace}/{workflow}` on the operator."""

    enabled: bool = Field(default=True, description="Accept deliveries.")
    auth: Literal["hmac", "bearer"] = Field(
        default="hmac",
        description="hmac: header X-Taskforge-Signature: sha256=<HMAC-SHA256 of the body>;"
        " bearer: header Authorization: Bearer <token>.",
    )
    secret_ref: SecretKeyRef = Field(description="Secret key holding the HMAC key or token.")
    max_body_bytes: int = Field(
        default=262_144,
        ge=1,
        le=262_144,
        description="Largest accepted body, in bytes (at most 256 KiB: the body is kept in"
        " the run as trigger.body, and the run must fit in etcd).",
    )
    params_from_body: dict[MapKey, BodyPath] | None = Field(
        default=None,
        max_length=100,
        description="Param name to a dotted path in the JSON body, e.g."
        " {ref: pull_request.head.ref}.",
    )


class Triggers(Model):
    """What starts runs besides a manually created WorkflowRun."""

    schedule: Schedule | None = Field(default=None, description="Cron schedule.")
    webhook: Webhook | None = Field(default=None, description="Webhook endpoint.")


class Concurrency(Model):
    """A limit on how many runs of this workflow run at once."""

    max_runs: int = Field(ge=1, le=10_000, description="Runs of this workflow running at once.")


class RunRateLimit(Model):
    """A limit on how many runs of this workflow start per interval."""

    limit: int = Field(ge=1, le=1_000_000, description="Run starts allowed per interval.")
    per: Duration = Field(pattern=DURATION_PATTERN, description="Interval, e.g. 1m.")


class History(Model):
    """How many finished WorkflowRuns are kept; older ones are deleted.

    Only runs Taskforge created (spec.trigger set: cron, webhook, the CLI, retry, replay) are
    deleted, unless includeApplied is true: a run applied from git by a GitOps tool would be
    applied again, and run again, as soon as it was deleted.
    """

    successful_runs: int = Field(
        default=10, ge=0, le=1000, description="Succeeded runs kept, 0 to 1000."
    )
    failed_runs: int = Field(
        default=10, ge=0, le=1000, description="Failed or cancelled runs kept, 0 to 1000."
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, description="Delete a finished run after this many seconds."
    )
    include_applied: bool = Field(
        default=False,
        description="Also delete runs that Taskforge did not create (no spec.trigger: applied"
        " with kubectl, Helm or a GitOps tool). Off by default: a GitOps tool re-creates a"
        " deleted run from git, and it runs again.",
    )


# The step graph (unknown dependsOn entries, a finally step named like a step, cycles) is
# checked by the operator's validating admission webhook, with the engine's own DAG code
# (engine/validation.py), not by CEL: CEL cannot index a list by name, and a map of the names
# built with transformMapEntry fails at run time (a leaked "insert failed: key already
# exists") as soon as a name is used twice, while a duplicate-proof check (sort, distinct,
# nested exists) is O(n^2) in the cost budget of a 2,000-step workflow. Without the webhook
# the same problems show in the Workflow's Valid condition. What stays here is per-object.
_WORKFLOW_SPEC_RULES = [
    cel_rule(text_budget_rule(), TEXT_BUDGET_MESSAGE, field_path=".steps"),
]


class WorkflowSpec(Model):
    """What to run: the steps, their dependencies and policies, and what triggers a run."""

    model_config = ConfigDict(json_schema_extra=k8s_validations(*_WORKFLOW_SPEC_RULES))

    description: str | None = Field(
        default=None, max_length=4096, description="What the workflow does, for people."
    )
    params: list[ParamSpec] | None = Field(
        default=None, max_length=100, description="Typed parameters a run may or must set."
    )
    steps: list[Step] = Field(
        min_length=1,
        max_length=2000,
        description="The steps, a DAG: a step starts when all its dependsOn steps have finished;"
        " steps without dependsOn start at once. Names are unique.",
        json_schema_extra=list_map("name"),
    )
    finally_steps: list[Step] | None = Field(
        default=None,
        alias="finally",
        max_length=100,
        description="Steps that run after all others end, whatever the outcome (also when the"
        " run fails or is cancelled).",
        json_schema_extra=list_map("name"),
    )
    retry: RetryPolicy | None = Field(
        default=None, description="Default retry policy for steps that set none."
    )
    step_timeout: Duration | None = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="Default time limit of each step attempt, e.g. 10m.",
    )
    timeout: Duration | None = Field(
        default=None, pattern=DURATION_PATTERN, description="Time limit of a whole run, e.g. 1h."
    )
    triggers: Triggers | None = Field(default=None, description="Cron and webhook triggers.")
    concurrency: Concurrency | None = Field(
        default=None, description="Limit on this workflow's runs running at once."
    )
    rate_limit: RunRateLimit | None = Field(
        default=None, description="Limit on this workflow's run starts per interval."
    )
    history: History | None = Field(
        default=None, description="How many finished runs to keep (default 10 of each)."
    )
    pod: PodSettings | None = Field(
        default=None,
        description="Pod settings of every step (service account, pull secrets, scheduling,"
        " resources, labels, volumes), over the chart's stepPodDefaults; a step's pod wins.",
    )
    outputs: dict[MapKey, OutputTemplate] | None = Field(
        default=None,
        max_length=MAX_RUN_OUTPUTS,
        description="Outputs of the whole run: name to template, e.g. {total:"
        " '{{ steps.sum.outputs.value }}'}, rendered when the run succeeds and recorded in"
        " status.outputs (strings; a sub-workflow step's outputs). Names are letters,"
        " digits and '_'. At most 16 KiB in all: a run whose outputs are larger, or whose"
        " output template fails, ends Failed (reason OutputsFailed) naming the output.",
        json_schema_extra=k8s_validations(
            cel_rule("self.all(k, k.matches('" + OUTPUT_NAME_PATTERN + "'))",
                     "output names are letters, digits and '_', not starting with a digit")
        ),
    )
    priority: Priority | None = Field(
        default=None,
        description="Default priority of this workflow's runs (-1000 to 1000, default 0); a"
        " run's spec.priority wins. When a concurrency or rate limit makes runs or steps wait,"
        " higher priority goes first, then creation order.",
    )
    step_events: Literal["default", "all"] = Field(
        default="default",
        description="Which Kubernetes Events a run posts. default: retries, failures and the"
        " run's end (a step's start and success show in status; each Event is an API write)."
        " all: also StepStarted, StepSucceeded and StepSkipped for every step.",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> WorkflowSpec:
        seen: set[str] = set()
        for step in [*self.steps, *(self.finally_steps or [])]:
            if step.name in seen:
                raise ValueError(f"step name {step.name!r} is used twice")
            seen.add(step.name)
        names = {s.name for s in self.steps}
        for step in self.steps:
            for dep in step.dependencies:
                if dep not in names:
                    raise ValueError(f"step {step.name!r} depends on unknown step {dep!r}")
        for step in self.finally_steps or []:
            for dep in step.dependencies:
                if dep not in seen:
                    raise ValueError(f"finally step {step.name!r} depends on unknown step {dep!r}")
        return self

    @model_validator(mode="after")
    def _output_names(self) -> WorkflowSpec:
        for key in self.outputs or {}:
            if not re.match(OUTPUT_NAME_PATTERN, key):
                raise ValueError(f"outputs: name {key!r} must be letters, digits and '_',"
                                 " not starting with a digit")
        return self

    @model_validator(mode="after")
    def _mounts_name_volumes(self) -> WorkflowSpec:
        for field, group in (("steps", self.steps), ("finally", self.finally_steps or [])):
            for i, step in enumerate(group):
                missing = unmounted_names(self.pod, step.pod)
                if missing:
                    raise ValueError(f"{field}[{i}].pod.volumeMounts: no volume named"
                                     f" {missing[0]!r} in spec.pod.volumes or the step's")
        return self

    @model_validator(mode="after")
    def _text_budget(self) -> WorkflowSpec:
        """Mirrors the CRD's CEL rule (api/sizes.py), so `taskforge validate` agrees."""
        if spec_text(self.all_steps) > SPEC_TEXT_MAX_CHARS:
            raise ValueError(f"steps: {TEXT_BUDGET_MESSAGE}")
        return self

    @property
    def all_steps(self) -> list[Step]:
        return [*self.steps, *(self.finally_steps or [])]


class ObjectRef(Model):
    """A reference to a WorkflowRun in the same namespace."""

    name: str = Field(description="Name of the run.")
    uid: str | None = Field(default=None, description="UID of the run.")


class WorkflowStatus(Model):
    """What the operator observed about the workflow; written by the operator only."""

    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation the operator last processed."
    )
    conditions: list[Condition] | None = Field(
        default=None,
        description="Valid (the DAG has no cycles and every reference resolves), Scheduled, ...",
        json_schema_extra=list_map("type"),
    )
    last_run: str | None = Field(default=None, description="Name of the newest run.")
    last_run_time: datetime | None = Field(default=None, description="When the newest run began.")
    last_schedule_time: datetime | None = Field(
        default=None, description="The last scheduled (cron) time a run was started for."
    )
    next_schedule_time: datetime | None = Field(
        default=None, description="The next scheduled (cron) time."
    )
    active: list[ObjectRef] | None = Field(default=None, description="Runs now running.")
    step_count: int | None = Field(
        default=None, description="Number of steps, shown by kubectl get."
    )


class ObjectMeta(Model):
    """The part of metadata Taskforge reads; everything else is passed through untouched."""

    model_config = Model.model_config | {"extra": "ignore"}

    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    creation_timestamp: datetime | None = None


class Workflow(Model):
    """A workflow: steps run as Kubernetes Jobs, started manually, by cron or by webhook."""

    model_config = Model.model_config | {"extra": "ignore"}

    api_version: Literal["taskforge.io/v1alpha1"] = "taskforge.io/v1alpha1"
    kind: Literal["Workflow"] = "Workflow"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: WorkflowSpec
    status: WorkflowStatus | None = None


__all__ = ["ObjectMeta", "ObjectRef", "ResourceName", "Workflow", "WorkflowSpec"]
