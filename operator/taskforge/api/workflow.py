"""The Workflow resource: what to run, and when."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, model_validator

from taskforge.api.common import Condition, Model, ResourceName, SecretKeyRef
from taskforge.api.durations import DURATION_PATTERN
from taskforge.api.steps import Duration, RetryPolicy, Step

ParamType = Literal["string", "number", "integer", "boolean", "object", "array"]


class ParamSpec(Model):
    name: str = Field(
        min_length=1, max_length=63, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Name."
    )
    type: ParamType = Field(default="string", description="JSON type the value must have.")
    default: Any = Field(default=None, description="Value used when a run does not set it.")
    description: str | None = Field(default=None, max_length=1024, description="What it is for.")
    required: bool = Field(default=False, description="A run must set it (ignored with default).")


class Schedule(Model):
    """Cron trigger with the exact semantics of a Kubernetes CronJob."""

    cron: str = Field(min_length=1, max_length=256, description="Cron expression, e.g. '*/5 * * * *'.")
    timezone: str | None = Field(
        default=None, max_length=64, description="IANA time zone, e.g. Europe/Berlin; default UTC."
    )
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = Field(
        default="Allow", description="What to do when the previous run is still active."
    )
    starting_deadline_seconds: int | None = Field(
        default=None, ge=0, description="Skip a schedule not started within this many seconds."
    )
    suspend: bool = Field(default=False, description="Start no new scheduled runs.")
    params: dict[str, Any] | None = Field(default=None, description="Params for scheduled runs.")


class Webhook(Model):
    """Trigger by `POST /hooks/{namespace}/{workflow}` on the operator."""

    enabled: bool = Field(default=True, description="Accept deliveries.")
    auth: Literal["hmac", "bearer"] = Field(
        default="hmac", description="hmac: X-Taskforge-Signature sha256=...; bearer: a token."
    )
    secret_ref: SecretKeyRef = Field(description="Secret key holding the HMAC key or token.")
    max_body_bytes: int = Field(
        default=1_048_576, ge=1, le=10_485_760, description="Largest accepted body."
    )
    params_from_body: dict[str, str] | None = Field(
        default=None,
        description="Param name to a dotted path in the JSON body, e.g. {ref: pull_request.head.ref}.",
    )


class Triggers(Model):
    schedule: Schedule | None = Field(default=None, description="Cron schedule.")
    webhook: Webhook | None = Field(default=None, description="Webhook endpoint.")


class Concurrency(Model):
    max_runs: int = Field(ge=1, le=10_000, description="Runs of this workflow running at once.")


class RunRateLimit(Model):
    limit: int = Field(ge=1, le=1_000_000, description="Run starts allowed per interval.")
    per: Duration = Field(pattern=DURATION_PATTERN, description="Interval, e.g. 1m.")


class History(Model):
    successful_runs: int = Field(default=10, ge=0, le=1000, description="Succeeded runs kept.")
    failed_runs: int = Field(default=10, ge=0, le=1000, description="Failed or cancelled kept.")
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, description="Delete a finished run after this many seconds."
    )


class WorkflowSpec(Model):
    description: str | None = Field(default=None, max_length=4096, description="What it does.")
    params: list[ParamSpec] | None = Field(default=None, description="Typed parameters.")
    steps: list[Step] = Field(min_length=1, max_length=2000, description="The steps, a DAG.")
    finally_steps: list[Step] | None = Field(
        default=None,
        alias="finally",
        max_length=100,
        description="Steps that run after all others end, whatever the outcome.",
    )
    retry: RetryPolicy | None = Field(
        default=None, description="Default retry policy for steps that set none."
    )
    step_timeout: Duration | None = Field(
        default=None, pattern=DURATION_PATTERN, description="Default per-attempt step timeout."
    )
    timeout: Duration | None = Field(
        default=None, pattern=DURATION_PATTERN, description="Time limit for a whole run."
    )
    triggers: Triggers | None = Field(default=None, description="Cron and webhook triggers.")
    concurrency: Concurrency | None = Field(default=None, description="Limit on running runs.")
    rate_limit: RunRateLimit | None = Field(default=None, description="Limit on run starts.")
    history: History | None = Field(default=None, description="How many finished runs to keep.")

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

    @property
    def all_steps(self) -> list[Step]:
        return [*self.steps, *(self.finally_steps or [])]


class ObjectRef(Model):
    name: str = Field(description="Name.")
    uid: str | None = Field(default=None, description="UID.")


class WorkflowStatus(Model):
    observed_generation: int | None = Field(default=None, description="Generation last seen.")
    conditions: list[Condition] | None = Field(default=None, description="Valid, Scheduled, ...")
    last_run: str | None = Field(default=None, description="Name of the newest run.")
    last_run_time: datetime | None = Field(default=None, description="When the newest run began.")
    last_schedule_time: datetime | None = Field(default=None, description="Last cron time run.")
    next_schedule_time: datetime | None = Field(default=None, description="Next cron time.")
    active: list[ObjectRef] | None = Field(default=None, description="Runs now running.")
    step_count: int | None = Field(default=None, description="Number of steps (printer column).")


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
    model_config = Model.model_config | {"extra": "ignore"}

    api_version: Literal["taskforge.io/v1alpha1"] = "taskforge.io/v1alpha1"
    kind: Literal["Workflow"] = "Workflow"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: WorkflowSpec
    status: WorkflowStatus | None = None


__all__ = ["ObjectMeta", "ObjectRef", "ResourceName", "Workflow", "WorkflowSpec"]
