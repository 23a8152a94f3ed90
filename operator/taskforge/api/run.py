"""The WorkflowRun resource: one execution, and everything the operator knows about it.

The status of each step is in api/step_status.py; this module re-exports it, so a run and its
steps' status can still be imported from one place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from taskforge.api.approvals import APPROVALS_FIELD, Approval
from taskforge.api.common import (
    Condition,
    Model,
    ResourceName,
    cel_rule,
    k8s_validations,
    list_map,
)
from taskforge.api.durations import Timestamp
from taskforge.api.step_status import (
    MAX_ATTEMPT_HISTORY,
    MAX_ATTEMPT_MESSAGE_CHARS,
    MAX_ITEM_FAILURES_KEPT,
    TERMINAL_STEP_PHASES,
    AttemptReason,
    AttemptRecord,
    ItemRecord,
    ItemsStatus,
    StepFailure,
    StepPhase,
    StepStatus,
    StoredResult,
)
from taskforge.api.timing import Priority, StartAfter, StartAt
from taskforge.api.workflow import ObjectMeta, WorkflowSpec

__all__ = [
    "MAX_ATTEMPT_HISTORY",
    "MAX_ATTEMPT_MESSAGE_CHARS",
    "MAX_ITEM_FAILURES_KEPT",
    "TERMINAL_RUN_PHASES",
    "TERMINAL_STEP_PHASES",
    "AttemptReason",
    "AttemptRecord",
    "DeadLetter",
    "ItemRecord",
    "ItemsStatus",
    "PinnedWorkflow",
    "ReusedStep",
    "RunPhase",
    "StepFailure",
    "StepPhase",
    "StepStatus",
    "StoredResult",
    "TriggerInfo",
    "WorkflowRef",
    "WorkflowRun",
    "WorkflowRunSpec",
    "WorkflowRunStatus",
]

RunPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Cancelled"]
TERMINAL_RUN_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed", "Cancelled"})


class WorkflowRef(Model):
    """A reference to a Workflow in the run's namespace."""

    name: ResourceName = Field(description="Name of a Workflow in the run's namespace.")


class TriggerInfo(Model):
    """What started the run; templates read it as {{ trigger.* }}."""

    type: Literal["manual", "schedule", "webhook", "retry", "replay"] = Field(
        default="manual",
        description="What started the run: manual, schedule, webhook, retry or replay.",
    )
    scheduled_time: datetime | None = Field(
        default=None, description="The cron time the run was started for (type schedule)."
    )
    delivery_id: str | None = Field(
        default=None,
        max_length=256,
        description="The webhook delivery id (type webhook), for idempotency.",
    )
    body: Any = Field(
        default=None, description="The webhook's JSON body, as {{ trigger.body }} in templates."
    )
    reservation: str | None = Field(
        default=None,
        max_length=64,
        description="Set by the webhook server: the id of the rate-limit token the delivery"
        " already spent. Checked in Redis and usable once, by the run it was made for; any"
        " other value just means the run is rate limited like every other.",
    )


class ReusedStep(Model):
    """A step that succeeded in an earlier run, whose result this run takes over."""

    name: str = Field(
        max_length=40, description="Name of the step whose earlier result is reused."
    )
    outputs: dict[str, Any] | None = Field(
        default=None, max_length=100, description="The outputs the step produced then."
    )


_RUN_SPEC_RULES = [
    cel_rule(
        "has(self.workflowRef) != has(self.workflowSpec)",
        "set exactly one of workflowRef and workflowSpec",
    ),
    cel_rule(
        "!has(oldSelf.approvals) || has(self.approvals)",
        "an approval cannot be changed or withdrawn once given",
        field_path=".approvals",
    ),
    cel_rule(
        "!(has(self.startAt) && has(self.startAfter))",
        "set at most one of startAt and startAfter",
        field_path=".startAfter",
    ),
]


class WorkflowRunSpec(Model):
    """One execution of a workflow: which workflow, its parameters, and cancellation."""

    model_config = ConfigDict(json_schema_extra=k8s_validations(*_RUN_SPEC_RULES))

    workflow_ref: WorkflowRef | None = Field(
        default=None, description="The Workflow to run; not together with workflowSpec."
    )
    workflow_spec: WorkflowSpec | None = Field(
        default=None, description="An inline workflow to run; not together with workflowRef."
    )
    params: dict[str, Any] | None = Field(
        default=None,
        max_length=100,
        description="Parameter values, by name; see the workflow's params. Any JSON: its size"
        " counts toward the run's size (see README, Limits).",
    )
    cancel: bool = Field(
        default=False,
        description="Set true to cancel the run: running steps stop, finally steps run."
        " It cannot be set back to false.",
        json_schema_extra=k8s_validations(
            cel_rule("self || !oldSelf", "cancel cannot be set back to false once true")
        ),
    )
    trigger: TriggerInfo | None = Field(
        default=None, description="What started the run (set by the operator and the CLI)."
    )
    approvals: list[Approval] | None = APPROVALS_FIELD
    reuse_steps: list[ReusedStep] | None = Field(
        default=None,
        max_length=2000,
        description="Steps that succeeded in an earlier run: not run again, outputs reused.",
    )
    start_at: StartAt | None = Field(
        default=None,
        description="Start the run at this time (RFC 3339, e.g. 2026-01-01T09:00:00Z); until"
        " then it stays Pending with reason Scheduled. Not together with startAfter.",
    )
    start_after: StartAfter | None = Field(
        default=None,
        description="Start the run this long after it was created, e.g. 10m (at most 8784h);"
        " until then it stays Pending with reason Scheduled. Not together with startAt.",
    )
    priority: Priority | None = Field(
        default=None,
        description="Priority of this run (-1000 to 1000; default: the workflow's priority,"
        " else 0). When a concurrency or rate limit makes runs or steps wait, higher priority"
        " goes first, then creation order; only among waiters under the same limit key, which"
        " is always within one namespace. The operator may cap it (chart value maxPriority).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> WorkflowRunSpec:
        if (self.workflow_ref is None) == (self.workflow_spec is None):
            raise ValueError("set exactly one of workflowRef and workflowSpec")
        return self

    @model_validator(mode="after")
    def _one_start(self) -> WorkflowRunSpec:
        if self.start_at is not None and self.start_after is not None:
            raise ValueError("startAfter: set at most one of startAt and startAfter")
        return self


class PinnedWorkflow(Model):
    """The Workflow the run started from; later edits of it do not change the run."""

    name: str | None = Field(
        default=None, description="Workflow name (unset for an inline workflowSpec)."
    )
    generation: int | None = Field(
        default=None, description="The Workflow's .metadata.generation when the run started."
    )
    uid: str | None = Field(default=None, description="The Workflow's UID.")


class DeadLetter(Model):
    """The record of a step that failed for good, kept here before it is shipped to Redis."""

    id: str = Field(description="Record id (the run's UID and the failed step).")
    workflow: str | None = Field(default=None, description="Workflow name.")
    step: str = Field(description="Name of the failed step.")
    error: str = Field(description="The failure message.")
    attempts: int = Field(description="Attempts made.")
    failed_at: Timestamp = Field(description="When the step failed for good.")
    shipped: bool = Field(
        default=False, description="Redis acknowledged the record (the outbox is drained)."
    )
    stream_id: str | None = Field(default=None, description="The Redis stream entry id.")


class WorkflowRunStatus(Model):
    """What the operator knows about the run: the source of truth, written by the operator only."""

    phase: RunPhase = Field(
        default="Pending",
        description="Pending, Running, or terminal: Succeeded, Failed, Cancelled.",
    )
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation the operator last processed."
    )
    conditions: list[Condition] | None = Field(
        default=None,
        description="Conditions such as Succeeded, for kubectl wait --for=condition=Succeeded.",
        json_schema_extra=list_map("type"),
    )
    workflow: PinnedWorkflow | None = Field(
        default=None, description="The Workflow the run was pinned to when it started."
    )
    workflow_spec: WorkflowSpec | None = Field(
        default=None,
        description="Copy of the spec the run started from; edits of the Workflow do not"
        " affect the run.",
    )
    params: dict[str, Any] | None = Field(
        default=None, description="Parameter values after defaults were applied."
    )
    started_at: Timestamp | None = Field(default=None, description="When the run started.")
    finished_at: Timestamp | None = Field(default=None, description="When the run ended.")
    duration: str | None = Field(
        default=None,
        description="How long the run took, or has taken so far, e.g. 1m30s (see"
        " taskforge.api.durations.format_duration).",
    )
    progress: str | None = Field(default=None, description="Terminal steps / all steps, e.g. 3/5.")
    item_progress: str | None = Field(
        default=None,
        description="Ended forEach items / all items of the run's forEach steps, e.g. 340/1000.",
    )
    steps: dict[str, StepStatus] | None = Field(
        default=None, description="Status of each step, by step name."
    )
    message: str | None = Field(default=None, description="Why the run is in this phase.")
    dead_letter: DeadLetter | None = Field(
        default=None, description="The dead-letter record of the step that failed the run."
    )
    outputs: dict[str, str] | None = Field(
        default=None,
        description="The run's outputs (the workflow's spec.outputs, rendered when the run"
        " succeeded), at most 16 KiB.",
    )


class WorkflowRun(Model):
    """One execution of a Workflow (named by spec.workflowRef or inline in spec.workflowSpec)."""

    model_config = Model.model_config | {"extra": "ignore"}

    api_version: Literal["taskforge.io/v1alpha1"] = "taskforge.io/v1alpha1"
    kind: Literal["WorkflowRun"] = "WorkflowRun"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: WorkflowRunSpec
    status: WorkflowRunStatus | None = None
