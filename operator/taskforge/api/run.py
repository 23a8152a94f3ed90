"""The WorkflowRun resource: one execution, and everything the operator knows about it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, model_validator

from taskforge.api.common import Condition, Model, ResourceName
from taskforge.api.steps import FailureKind
from taskforge.api.workflow import ObjectMeta, WorkflowSpec

RunPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Cancelled"]
StepPhase = Literal[
    "Pending", "Waiting", "Running", "Retrying", "Succeeded", "Failed", "Skipped", "Cancelled"
]
TERMINAL_RUN_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed", "Cancelled"})
TERMINAL_STEP_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed", "Skipped", "Cancelled"})


class WorkflowRef(Model):
    name: ResourceName = Field(description="Name of a Workflow in the run's namespace.")


class TriggerInfo(Model):
    type: Literal["manual", "schedule", "webhook", "retry", "replay"] = Field(
        default="manual", description="What started the run."
    )
    scheduled_time: datetime | None = Field(default=None, description="Cron time (schedule).")
    delivery_id: str | None = Field(default=None, description="Webhook delivery id.")
    body: Any = Field(default=None, description="Webhook JSON body, as `trigger.body`.")


class ReusedStep(Model):
    name: str = Field(description="Step whose earlier result is reused.")
    outputs: dict[str, Any] | None = Field(default=None, description="Its outputs.")


class WorkflowRunSpec(Model):
    workflow_ref: WorkflowRef | None = Field(default=None, description="The Workflow to run.")
    workflow_spec: WorkflowSpec | None = Field(
        default=None, description="An inline workflow, instead of workflowRef."
    )
    params: dict[str, Any] | None = Field(default=None, description="Parameter values.")
    cancel: bool = Field(
        default=False, description="Set true to cancel: running steps stop, finally steps run."
    )
    trigger: TriggerInfo | None = Field(default=None, description="What started the run.")
    reuse_steps: list[ReusedStep] | None = Field(
        default=None,
        description="Steps that succeeded in an earlier run: not run again, outputs reused.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> WorkflowRunSpec:
        if (self.workflow_ref is None) == (self.workflow_spec is None):
            raise ValueError("set exactly one of workflowRef and workflowSpec")
        return self


class StepStatus(Model):
    """Kept small on purpose: a 1,000-step run must stay well under etcd's object limit."""

    phase: StepPhase = Field(default="Pending", description="Where the step is.")
    attempts: int = Field(default=0, description="Attempts launched so far.")
    job_name: str | None = Field(default=None, description="Job of the latest attempt.")
    started_at: datetime | None = Field(default=None, description="First attempt's start.")
    finished_at: datetime | None = Field(default=None, description="When it became terminal.")
    exit_code: int | None = Field(default=None, description="Exit code of the latest attempt.")
    failure: FailureKind | None = Field(default=None, description="Kind of the last failure.")
    outputs: dict[str, Any] | None = Field(default=None, description="Result (bounded).")
    message: str | None = Field(default=None, description="Why it is in this phase.")
    next_attempt_at: datetime | None = Field(default=None, description="When a retry starts.")
    wait_until: datetime | None = Field(default=None, description="Rate-limited until then.")
    reused: bool | None = Field(default=None, description="Result taken from an earlier run.")


class PinnedWorkflow(Model):
    name: str | None = Field(default=None, description="Workflow name (none when inline).")
    generation: int | None = Field(default=None, description="Its generation when pinned.")
    uid: str | None = Field(default=None, description="Its UID.")


class DeadLetter(Model):
    id: str = Field(description="Record id (the run's UID and failed step).")
    workflow: str | None = Field(default=None, description="Workflow name.")
    step: str = Field(description="The failed step.")
    error: str = Field(description="The failure message.")
    attempts: int = Field(description="Attempts made.")
    failed_at: datetime = Field(description="When the step failed for good.")
    shipped: bool = Field(default=False, description="Redis acknowledged the record.")
    stream_id: str | None = Field(default=None, description="Redis stream entry id.")


class WorkflowRunStatus(Model):
    phase: RunPhase = Field(default="Pending", description="Pending, Running, or terminal.")
    observed_generation: int | None = Field(default=None, description="Generation last seen.")
    conditions: list[Condition] | None = Field(default=None, description="Succeeded, ...")
    workflow: PinnedWorkflow | None = Field(default=None, description="Pinned workflow.")
    workflow_spec: WorkflowSpec | None = Field(
        default=None, description="Copy of the spec the run started from; edits do not affect it."
    )
    params: dict[str, Any] | None = Field(default=None, description="Resolved params.")
    started_at: datetime | None = Field(default=None, description="When the run started.")
    finished_at: datetime | None = Field(default=None, description="When it ended.")
    progress: str | None = Field(default=None, description="Terminal steps / all steps.")
    steps: dict[str, StepStatus] | None = Field(default=None, description="Per-step status.")
    message: str | None = Field(default=None, description="Why the run is in this phase.")
    dead_letter: DeadLetter | None = Field(default=None, description="Dead-letter record.")


class WorkflowRun(Model):
    model_config = Model.model_config | {"extra": "ignore"}

    api_version: Literal["taskforge.io/v1alpha1"] = "taskforge.io/v1alpha1"
    kind: Literal["WorkflowRun"] = "WorkflowRun"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: WorkflowRunSpec
    status: WorkflowRunStatus | None = None
