"""The WorkflowRun resource: one execution, and everything the operator knows about it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from taskforge.api.approvals import APPROVALS_FIELD, Approval, ApprovalRecord
from taskforge.api.common import (
    Condition,
    Model,
    ResourceName,
    cel_rule,
    k8s_validations,
    list_map,
)
from taskforge.api.durations import Timestamp
from taskforge.api.timing import Priority, StartAfter, StartAt
from taskforge.api.workflow import ObjectMeta, WorkflowSpec

StepFailure = Literal["Failed", "TimedOut", "PodFailure", "TemplateLimit"]
"""FailureKind (what a retry policy can name) plus TemplateLimit, which is never retried."""
RunPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Cancelled"]
StepPhase = Literal[
    "Pending", "Waiting", "Running", "Retrying", "Succeeded", "Failed", "Skipped", "Cancelled"
]
TERMINAL_RUN_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed", "Cancelled"})
TERMINAL_STEP_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed", "Skipped", "Cancelled"})


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


MAX_ATTEMPT_HISTORY = 10
"""Attempts kept in `attemptHistory` (fewer in big runs: engine/attempts.py). With
`retry.limit` up to 100 a step could otherwise keep 101 records; ten show the pattern (the
same error, growing waits) in at most ~2.3 KiB."""
MAX_ATTEMPT_MESSAGE_CHARS = 128

AttemptReason = Literal["Succeeded", "Failed", "TimedOut", "PodFailure", "Cancelled"]


class AttemptRecord(Model):
    """One attempt of a step: when it ran and how it ended."""

    attempt: int = Field(description="The attempt's number, from 1.")
    started_at: Timestamp | None = Field(
        default=None, description="When the operator created the attempt's Job."
    )
    finished_at: Timestamp | None = Field(
        default=None, description="When it ended (unset while it runs)."
    )
    exit_code: int | None = Field(default=None, description="Exit code of the step's process.")
    reason: AttemptReason | None = Field(
        default=None,
        description="How it ended: Succeeded, Failed, TimedOut, PodFailure or Cancelled.",
    )
    message: str | None = Field(
        default=None,
        max_length=MAX_ATTEMPT_MESSAGE_CHARS,
        description="Why it failed, cut to 128 characters.",
    )


class StoredResult(Model):
    """Where a step's whole result is kept when it is larger than its share of status.

    The operator writes the result into this ConfigMap (owned by the run, so it goes with
    it) before status records the step as done: an acknowledged result is never lost.
    """

    config_map: str = Field(max_length=253, description="ConfigMap holding the result.")
    size: int = Field(description="Size of the whole result as compact JSON, in bytes.")
    sha256: str = Field(max_length=64, description="SHA-256 of that JSON, to check a read.")


MAX_ITEM_FAILURES_KEPT = 20
"""Failed items of a forEach step kept with their own record; the rest are counted."""


class ItemRecord(Model):
    """One item of a forEach step: kept while it runs or waits for a retry, and for the first
    failed items. Every other item is only its letter in `phases`."""

    index: int = Field(description="The item's position in forEach.items, from 0.")
    attempts: int = Field(default=0, description="Attempts launched for this item.")
    job_name: str | None = Field(default=None, description="Its latest attempt's Job.")
    started_at: Timestamp | None = Field(default=None, description="When its latest attempt began.")
    finished_at: Timestamp | None = Field(default=None, description="When it ended (failed).")
    next_attempt_at: Timestamp | None = Field(
        default=None, description="When its next attempt starts (waiting for a retry)."
    )
    exit_code: int | None = Field(default=None, description="Exit code of its latest attempt.")
    failure: StepFailure | None = Field(default=None, description="Kind of its last failure.")
    message: str | None = Field(
        default=None, max_length=MAX_ATTEMPT_MESSAGE_CHARS,
        description="Why it failed, cut to 128 characters.",
    )


class ItemsStatus(Model):
    """Progress of a forEach step, bounded whatever the number of items: counts, one letter
    per item, a record per item that runs or waits (at most maxParallel) and per failed item
    (the first 20), and the items' outputs in order within a byte budget."""

    total: int = Field(default=0, description="Number of items.")
    succeeded: int = Field(default=0, description="Items that succeeded.")
    failed: int = Field(default=0, description="Items that failed for good.")
    running: int = Field(default=0, description="Items with a Job running now.")
    retrying: int = Field(default=0, description="Items waiting for their next attempt.")
    pending: int = Field(default=0, description="Items not started yet.")
    cancelled: int = Field(default=0, description="Items stopped or never started.")
    phases: str = Field(
        default="",
        description="One letter per item, in order: P pending, R running, T waiting to retry,"
        " S succeeded, F failed, C cancelled (or never started).",
    )
    active: list[ItemRecord] | None = Field(
        default=None, description="The items running or waiting to retry."
    )
    failures: list[ItemRecord] | None = Field(
        default=None, max_length=MAX_ITEM_FAILURES_KEPT,
        description="The first 20 failed items.",
    )
    values: list[Any] | None = Field(
        default=None,
        description="The items, when forEach.items is a template (rendered once, when the"
        " step started).",
    )
    outputs: list[Any] | None = Field(
        default=None,
        description="Each item's outputs, in order (null for an item that did not succeed);"
        " an item over its share of the budget keeps a per-key summary (_truncated).",
    )


class StepStatus(Model):
    """Status of one step. Kept small on purpose: a 1,000-step run must stay well under etcd's
    object limit."""

    phase: StepPhase = Field(
        default="Pending",
        description="Pending, Waiting (rate or concurrency limit), Running, Retrying, or"
        " terminal: Succeeded, Failed, Skipped, Cancelled.",
    )
    attempts: int = Field(default=0, description="Attempts launched so far.")
    job_name: str | None = Field(default=None, description="Name of the latest attempt's Job.")
    started_at: Timestamp | None = Field(
        default=None, description="When the first attempt began (RFC 3339, milliseconds)."
    )
    finished_at: Timestamp | None = Field(default=None, description="When it became terminal.")
    exit_code: int | None = Field(default=None, description="Exit code of the latest attempt.")
    failure: StepFailure | None = Field(
        default=None,
        description="Kind of the last failure: Failed, TimedOut, PodFailure, or TemplateLimit"
        " (a template went over a cap on size or work; never retried).",
    )
    outputs: dict[str, Any] | None = Field(
        default=None,
        description="The step's result, as {{ steps.NAME.outputs }} in templates. Larger than"
        " the step's share of status, it is kept whole in the ConfigMap named by `result`, and"
        " here each key that did not fit is listed in `_truncated` with its size in bytes.",
    )
    result: StoredResult | None = Field(
        default=None, description="Where the whole result is kept when outputs is a summary."
    )
    message: str | None = Field(default=None, description="Why the step is in this phase.")
    next_attempt_at: Timestamp | None = Field(
        default=None, description="When the next attempt starts (phase Retrying)."
    )
    wait_until: Timestamp | None = Field(
        default=None, description="Held back by a rate limit until then (phase Waiting)."
    )
    reused: bool | None = Field(
        default=None, description="The result was taken from an earlier run (spec.reuseSteps)."
    )
    items: ItemsStatus | None = Field(
        default=None, description="Progress of a forEach step's items."
    )
    child_run: str | None = Field(
        default=None, description="The child WorkflowRun of a workflow step."
    )
    approval: ApprovalRecord | None = Field(
        default=None, description="How an approval step was decided: by whom, when, why."
    )
    attempt_history: list[AttemptRecord] | None = Field(
        default=None,
        max_length=MAX_ATTEMPT_HISTORY,
        description="Each attempt of a step that was retried, oldest first, the running one"
        " included: the last 10 (in runs of over 50 steps, 500 shared out, at least 2 a step;"
        " the first attempt listed tells how many older ones were dropped). Unset for a step"
        " that ran once: its startedAt, finishedAt, exitCode, failure and message say it all.",
    )



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
