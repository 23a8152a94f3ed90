"""Which status writes may wait a moment, so a quick step's launch and end share one write.

A 1-step run used to cost three writes of its own (the Job, status Running, status
Succeeded), and each write to a WorkflowRun is one of the API server's most expensive
requests (bench/RESULTS.md, 2026-12-01). A status that only records launches can wait:
if the operator crashes or loses the lease before writing it, nothing is lost, because the
next plan adopts the Jobs the status does not record (engine/observe.adopt) and a plain
step's success is read again from its Job. So such a status is held for a short window
(the operator's TASKFORGE_STATUS_COALESCE_SECONDS) and written with whatever comes next,
typically the step's end.

Everything else is written at once: failures, retries and their times, waits for a limit,
skips, cancels, results stored aside, child runs, deleted Jobs, forEach steps, and every
terminal run, because those are decisions made from facts (time, tokens, approvals) that a
later plan would not necessarily make again.
"""

from __future__ import annotations

from collections.abc import Iterable

from taskforge.api import TERMINAL_RUN_PHASES, WorkflowRunStatus
from taskforge.api.run import StepStatus
from taskforge.engine.actions import Action, CreateJob, EmitEvent

# Run-level fields a held status may change: the run's start and its derived summaries.
_RUN_FIELDS = frozenset({
    "phase", "observed_generation", "conditions", "workflow", "workflow_spec", "params",
    "started_at", "progress", "message", "steps",
})


def holdable(actions: Iterable[Action], stored: WorkflowRunStatus | None,
             new: WorkflowRunStatus) -> bool:
    """Whether `new` may wait to be written: it only starts the run, launches plain steps
    (new Jobs) and records plain steps' success, over the `stored` status."""
    if new.phase in TERMINAL_RUN_PHASES:
        return False
    launched = False
    for action in actions:
        if isinstance(action, CreateJob) and action.is_new and action.item is None:
            launched = True
        elif not isinstance(action, EmitEvent) or action.type != "Normal":
            return False
    if not launched:
        return False
    old = stored or WorkflowRunStatus()
    for name in WorkflowRunStatus.model_fields:
        if name not in _RUN_FIELDS and getattr(old, name) != getattr(new, name):
            return False
    old_steps = old.steps or {}
    return all(_step_holdable(old_steps.get(name), st) for name, st in (new.steps or {}).items())


def _step_holdable(old: StepStatus | None, new: StepStatus) -> bool:
    if old == new:
        return True
    if new.items is not None or new.child_run is not None:
        return False  # forEach and workflow steps: their bookkeeping is written at once
    if new.phase == "Pending":
        return old is None or old.phase == "Pending"
    if new.phase == "Running":  # launched, or a replan that changed nothing of its attempt
        return old is None or old.phase == "Pending" or (
            old.phase == "Running" and old.attempts == new.attempts)
    return new.phase == "Succeeded" and old is not None and old.phase == "Running"
