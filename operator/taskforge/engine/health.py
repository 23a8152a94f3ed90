"""kstatus health conditions: Ready, Reconciling, Stalled (both kinds) and Completed (runs).

GitOps tools (Flux, kpt, Argo CD's kstatus-based checks) judge a custom resource with
`sigs.k8s.io/cli-utils`' kstatus: `status.observedGeneration` behind `metadata.generation` is
InProgress, `Reconciling=True` is InProgress, `Stalled=True` is Failed, then `Ready` decides,
and a resource with none of them is Current. With only `Succeeded`, a failed run, one stuck on
a missing Workflow and an invalid Workflow were all Current. These functions derive the kstatus
conditions from what the engine already decided (the phase, the `Succeeded` condition, the
Workflow's `Valid`), so there is one source of truth and no new state:

| run phase | Ready | Reconciling | Stalled | Completed | kstatus |
|---|---|---|---|---|---|
| Pending (waiting for limits) | False | True | False | False | InProgress |
| Pending (WorkflowNotFound, InvalidWorkflow) | False | False | True | False | Failed |
| Running | False | True | False | False | InProgress |
| Succeeded | True | False | False | True | Current |
| Failed | False | False | True | True | Failed |
| Cancelled | False | False | True | True | Failed |

`Completed` is True on any end, so `kubectl wait --for=condition=Completed` returns for a
failed or cancelled run too (`Succeeded` alone makes it wait for a failure until its timeout).
A Cancelled run is Stalled: it will never do what its manifest asked, and a GitOps tool should
say so rather than call it healthy. The conditions are kept (with status False) rather than
removed when not True, so `kubectl get -o yaml` always shows all four.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from taskforge.api.common import Condition
from taskforge.api.run import RunPhase, WorkflowRunStatus
from taskforge.engine.conditions import SUCCEEDED, get_condition, set_condition

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
COMPLETED = "Completed"
HEALTH_TYPES = (READY, RECONCILING, STALLED, COMPLETED)

STALLED_PENDING_REASONS = frozenset({"WorkflowNotFound", "InvalidWorkflow"})
"""Pending for a cause that a person must fix (create or fix the Workflow). Every other
Pending reason (rate limit, concurrency, Redis) passes by itself: Reconciling."""


def health_conditions(
    conditions: list[Condition] | None,
    *,
    ready: bool,
    reconciling: bool,
    stalled: bool,
    completed: bool | None,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Set Ready, Reconciling, Stalled (and Completed unless `completed` is None).

    Each takes `reason`/`message` when True; when False it says what the resource is instead
    (the same reason, so `kubectl describe` reads the same word everywhere).
    """
    out = list(conditions or ())
    flags: list[tuple[str, bool]] = [(READY, ready), (RECONCILING, reconciling),
                                      (STALLED, stalled)]
    if completed is not None:
        flags.append((COMPLETED, completed))
    for type_, value in flags:
        out = set_condition(out, type_=type_, status="True" if value else "False",
                            reason=reason, message=message, now=now,
                            observed_generation=generation)
    return out


def run_health(status: WorkflowRunStatus, generation: int, now: datetime) -> WorkflowRunStatus:
    """The run's status with its kstatus conditions and observedGeneration brought up to date.

    An unchanged input gives an equal output (set_condition keeps unchanged conditions), so an
    idle replan still writes nothing.
    """
    succeeded = get_condition(status.conditions, SUCCEEDED)
    reason = succeeded.reason if succeeded is not None else status.phase
    message = succeeded.message if succeeded is not None else (status.message or "")
    phase = status.phase
    ended = phase in ("Succeeded", "Failed", "Cancelled")
    stalled = phase in ("Failed", "Cancelled") or (
        phase == "Pending" and reason in STALLED_PENDING_REASONS)
    conditions = health_conditions(
        status.conditions,
        ready=phase == "Succeeded",
        reconciling=not ended and not stalled,
        stalled=stalled,
        completed=ended,
        reason=reason,
        message=message,
        now=now,
        generation=generation,
    )
    if conditions == status.conditions and status.observed_generation == generation:
        return status
    return status.model_copy(update={"conditions": conditions,
                                     "observed_generation": generation})


def run_health_wire(
    phase: RunPhase, conditions: list[dict[str, Any]], generation: int | None, now: datetime
) -> list[dict[str, Any]]:
    """`run_health` for the statuses the adapter writes as dicts (a run the models reject, a
    run failed for its size), so those ends are Completed and Stalled too. Conditions of other
    types pass through as they are, even ones the model would not accept."""
    ours = (SUCCEEDED, *HEALTH_TYPES)
    others = [c for c in conditions if c.get("type") not in ours]
    parsed: list[Condition] = []
    for c in conditions:
        if c.get("type") in ours:
            try:
                parsed.append(Condition.model_validate(c))
            except ValueError:
                continue  # an unreadable old one is replaced
    status = WorkflowRunStatus(phase=phase, conditions=parsed)
    healthy = run_health(status, generation or 1, now)
    return [*others, *(c.to_k8s() for c in healthy.conditions or ())]


def health_is_current(generation: int | None, status: dict[str, Any]) -> bool:
    """A finished run needs a plan only to catch up its kstatus conditions: a run finished
    before they existed, or whose spec was edited since (observedGeneration behind)."""
    return status.get("observedGeneration") == generation and any(
        c.get("type") == COMPLETED for c in status.get("conditions") or ())


def workflow_health(
    conditions: list[Condition], *, valid: bool, reason: str, message: str, now: datetime,
    generation: int,
) -> list[Condition]:
    """A Workflow is Ready when Valid, and Stalled when not: an invalid spec stays invalid until
    someone edits it. It is never Reconciling once the operator has written its status (the
    observedGeneration check covers the time before that). No Completed: a Workflow never ends.
    """
    return health_conditions(conditions, ready=valid, reconciling=False, stalled=not valid,
                             completed=None, reason=reason, message=message, now=now,
                             generation=generation)
