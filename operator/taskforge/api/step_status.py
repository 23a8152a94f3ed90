"""The status of one step of a WorkflowRun: its phase, attempts, result and forEach items.

Apart from the run's own status because the engine works on it step by step (engine/observe,
attempts, fanout, stored results) without the run around it, and because its size decides
whether a 1,000-step run fits etcd: the caps on history, messages and items live here too.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from taskforge.api.approvals import ApprovalRecord
from taskforge.api.common import Model
from taskforge.api.durations import Timestamp

StepFailure = Literal["Failed", "TimedOut", "PodFailure", "TemplateLimit"]
"""FailureKind (what a retry policy can name) plus TemplateLimit, which is never retried."""
StepPhase = Literal[
    "Pending", "Waiting", "Running", "Retrying", "Succeeded", "Failed", "Skipped", "Cancelled"
]
TERMINAL_STEP_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed", "Skipped", "Cancelled"})

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
