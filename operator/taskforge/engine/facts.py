"""What the engine is told: plain, frozen facts the adapter gathers before each reconcile.

The engine never asks the cluster anything. Everything a decision may depend on, including
the current time, arrives here, which is what makes `plan()` a pure, table-testable function
and lets an operator restarted at any moment rebuild its picture from status and Jobs alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from taskforge.api.run import WorkflowRunSpec, WorkflowRunStatus
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.timing import not_before

JobState = Literal["Active", "Succeeded", "Failed"]
JobFailure = Literal["Failed", "TimedOut", "PodFailure"]


@dataclass(frozen=True)
class ObservedJob:
    """One Job of the run as the adapter sees it, together with what its pod reported.

    `failure` says why a Failed Job failed: `Failed` = the step's process exited non-zero,
    `TimedOut` = `activeDeadlineSeconds` passed, `PodFailure` = the pod could not run the step
    (image pull, eviction, pod deleted). The adapter should report a Job it knows was deleted
    before finishing as Failed/PodFailure; a Job that is simply not (yet) in its cache is left
    out, and the engine then repeats the idempotent CreateJob.
    """

    name: str
    step: str
    attempt: int
    state: JobState
    exit_code: int | None = None
    failure: JobFailure | None = None
    termination_message: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result_data: bytes | None = None
    """The whole result (outputs as JSON) when the termination message said it is in the pod
    log and the adapter read and checked it there (see engine/stored.py)."""
    result_error: str | None = None
    """Why such a result could not be read (the pod and its log are gone, say)."""
    item: int | None = None
    """The forEach item this Job runs (label taskforge.io/item); None for a plain step."""


@dataclass(frozen=True)
class LoadedResult:
    """A step's stored result read back for templates and `when`: its whole outputs, or why
    they could not be had (then templates see the summary in status and say so)."""

    sha256: str
    outputs: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class ObservedChild:
    """The child run of a workflow step, as the adapter found it under its deterministic name.

    `owned`: its controller owner reference is this run; a run of that name that is not (a
    user's, created first) is never adopted."""

    name: str
    owned: bool
    phase: str | None = None
    message: str | None = None
    outputs: Mapping[str, Any] | None = None
    deleted: bool = False
    """The child is gone: its last state, as the adapter saw it when it was deleted. A child
    deleted before it finished fails the step (creating it again would run it twice); one
    that had finished still ends the step as it ended."""


@dataclass(frozen=True)
class WorkflowFacts:
    """The referenced Workflow as it is now; only read on the first reconcile (pinning)."""

    name: str
    generation: int
    uid: str | None
    spec: WorkflowSpec


@dataclass(frozen=True)
class RunAdmission:
    """Whether a run that has not started may start now (rate limit, concurrency slots).

    The adapter asks Redis before planning a run's start and passes the answer in; the
    engine only turns a refusal into a Pending run that says why and until when.
    """

    allowed: bool
    reason: str = "Admitted"
    message: str = ""
    retry_after: float | None = None


@dataclass(frozen=True)
class RunAuthorization:
    """Whether the run's authority may read every Secret and ConfigMap its steps name.

    The adapter asks the API server (SubjectAccessReview) before the run starts; `denied`
    names what was refused and for whom (see `engine/authority.py`).
    """

    denied: str | None = None


@dataclass(frozen=True)
class RunFacts:
    """Everything `plan()` may look at for one WorkflowRun."""

    name: str
    namespace: str
    uid: str
    generation: int
    created_at: datetime
    spec: WorkflowRunSpec
    status: WorkflowRunStatus | None
    workflow: WorkflowFacts | None
    jobs: tuple[ObservedJob, ...]
    now: datetime
    admission: RunAdmission | None = None
    authorization: RunAuthorization | None = None

    def spec_to_start(self) -> tuple[WorkflowSpec, str | None] | None:
        """The spec this run would pin if it started now, and the Workflow it comes from (None
        for an inline spec); None once it has started, or while its Workflow is missing.

        What the gates before a start (authorization, limits) look at, in one place.
        """
        if self.status is not None and self.status.started_at is not None:
            return None
        spec = self.spec
        if not_before(spec.start_at, spec.start_after, self.created_at, self.now) is not None:
            return None  # a delayed run meets the gates when it is due, not before
        if self.spec.workflow_spec is not None:
            return self.spec.workflow_spec, None
        if self.workflow is not None:
            return self.workflow.spec, self.workflow.name
        return None
    results: Mapping[str, LoadedResult] = field(default_factory=dict)
    """Stored results of the steps `stored.wanted_results` names, by step."""
    children: Mapping[str, ObservedChild] = field(default_factory=dict)
    """The child runs of the run's workflow steps, by step (engine/subflow.py)."""
    lineage: tuple[str, ...] = ()
    """The workflows of the runs above this one, outermost first (a child run's call chain)."""
    slot_offers: frozenset[str] = frozenset()
    """Steps waiting for a step concurrency slot that was freed for them since the last plan:
    their launch is offered again now rather than at their waitUntil (the fallback poll)."""
