"""What the engine decides: actions for the adapter to apply, and the status to write.

Actions are idempotent by construction (a CreateJob names its Job deterministically, a
DeleteJob of a missing Job is done), so the adapter may apply a plan twice, or crash half
way and apply the next plan, without running any step attempt twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from taskforge.api.pod import PodSettings
from taskforge.api.run import WorkflowRunStatus


@dataclass(frozen=True)
class CreateJob:
    """Create the Job for one step attempt; a 409 (already exists) counts as success.

    `config` is the step's type config in wire (camelCase) form with templates rendered;
    references to Secrets and ConfigMaps are left as references for the pod to resolve.
    """

    step: str
    attempt: int
    job_name: str
    step_type: str
    config: dict[str, Any]
    timeout_seconds: int | None
    labels: dict[str, str]
    is_new: bool = True
    """False when repeated for a Running step whose Job is not observed yet: the Job most
    likely exists, so rate and concurrency limits must gate only new launches."""
    pod: PodSettings | None = None
    """The workflow's spec.pod merged with the step's pod (engine/podsettings.py); the Job
    builder merges the chart's defaults under it."""
    item: int | None = None
    """The forEach item this attempt runs (engine/fanout.py); None for a plain step."""


@dataclass(frozen=True)
class DeleteJob:
    """Delete a Job that must not keep running (cancelled, timed out, orphaned); 404 is done."""

    job_name: str
    reason: str


@dataclass(frozen=True)
class EmitEvent:
    """A Kubernetes Event on the run; emitted once per transition, never on a replan."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    step: str | None = None
    """The step the event is about, if any (lets the adapter filter or aggregate)."""


@dataclass(frozen=True)
class StoreResult:
    """Keep a step's whole result in a ConfigMap owned by the run; an existing one with the
    same SHA-256 is done. Applied before the status that refers to it is written, so status
    never names a result that is not stored."""

    step: str
    attempt: int
    config_map: str
    data: bytes
    sha256: str


@dataclass(frozen=True)
class CreateRun:
    """Create the child WorkflowRun of a workflow step (engine/subflow.py); a 409 for a run
    this run owns counts as success. Owned by the parent run (deleting it deletes the child),
    labelled with the parent run and step, its call chain in an annotation."""

    step: str
    run_name: str
    workflow: str
    params: dict[str, Any]
    labels: dict[str, str]
    lineage: tuple[str, ...]


@dataclass(frozen=True)
class CancelRun:
    """Set spec.cancel on a child run (its finally steps still run); 404 is done."""

    run_name: str
    reason: str


Action = CreateJob | DeleteJob | EmitEvent | StoreResult | CreateRun | CancelRun


@dataclass(frozen=True)
class Plan:
    """The outcome of one reconcile: apply `actions`, write `status`, come back later.

    `requeue_after` (seconds) is the earliest timed wake-up (a retry's start, a rate-limit
    wait, the run deadline); None when only a watch event can change anything.
    """

    actions: tuple[Action, ...]
    status: WorkflowRunStatus
    requeue_after: float | None
