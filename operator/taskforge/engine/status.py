"""Run-level status: phase, the Succeeded condition, progress, the dead-letter record.

Everything here is derived from the step statuses and a few facts, and an unchanged input
gives an equal output (conditions keep their objects), so an idle replan writes nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from taskforge.api.durations import format_duration
from taskforge.api.run import (
    TERMINAL_STEP_PHASES,
    DeadLetter,
    RunPhase,
    StepStatus,
    WorkflowRunStatus,
)
from taskforge.engine.actions import EmitEvent
from taskforge.engine.conditions import SUCCEEDED, get_condition, set_condition
from taskforge.engine.dag import Dag

PENDING = StepStatus()

# Succeeded=Unknown reasons that also record *why* a run is stopping. They are the latch
# that survives restarts: a run cancelled or timed out while its main steps ran keeps
# running its finally steps, and ends Cancelled / RunTimedOut, whatever happens meanwhile.
CANCELLING = "Cancelling"
TIMING_OUT = "TimingOut"
STOPPING = "Stopping"
LATCHES = frozenset({CANCELLING, TIMING_OUT})


def latched_cause(status: WorkflowRunStatus) -> str | None:
    cond = get_condition(status.conditions, SUCCEEDED)
    if cond is not None and cond.status == "Unknown" and cond.reason in LATCHES:
        return cond.reason
    return None


@dataclass(frozen=True)
class Outcome:
    phase: RunPhase
    reason: str
    message: str
    failed_step: str | None = None


def failed_steps(dag: Dag, steps: dict[str, StepStatus], phase: dict[str, str]) -> list[str]:
    """Steps whose failure fails the run (no continueOnFailure), earliest failure first."""
    failed = [n for n in dag.order if phase[n] == "Failed" and n not in dag.tolerant]
    return sorted(failed, key=lambda n: _finished_key(steps[n]))  # stable: DAG order on ties


def _finished_key(st: StepStatus) -> float:
    return st.finished_at.timestamp() if st.finished_at else float("inf")


def outcome(
    dag: Dag,
    steps: dict[str, StepStatus],
    phase: dict[str, str],
    cause: str | None,
    timeout: str | None,
) -> Outcome:
    if cause == CANCELLING:
        return Outcome("Cancelled", "Cancelled", "cancelled (spec.cancel is true)")
    if cause == TIMING_OUT:
        return Outcome("Failed", "RunTimedOut", f"the run timed out after {timeout}")
    failed = failed_steps(dag, steps, phase)
    if failed:
        name = failed[0]
        why = steps[name].message or "failed"
        # A template over a cap is the one failure with a reason of its own: it is the
        # user's to fix, and alerting can tell it from a step that ran and failed.
        reason = "TemplateLimit" if steps[name].failure == "TemplateLimit" else "Failed"
        return Outcome("Failed", reason, f"step {name!r} failed: {why}", failed_step=name)
    counts = Counter(phase.values())
    summary = ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items()))
    return Outcome("Succeeded", "Succeeded", f"all steps finished: {summary}")


def dead_letter(
    uid: str, workflow: str | None, step: str, st: StepStatus, now: datetime
) -> DeadLetter:
    return DeadLetter(
        id=f"{uid}/{step}",
        workflow=workflow,
        step=step,
        error=st.message or "failed",
        attempts=st.attempts,
        failed_at=st.finished_at or now,
    )


def running_reason(
    phase: dict[str, str], cause: str | None, failing: str | None,
    awaiting: tuple[str, ...] = (),
) -> tuple[str, str]:
    """(reason, message) of Succeeded=Unknown while the run is not finished. An approval step
    waiting for a person (`awaiting`) is what a reader most needs to know, after a stop."""
    if cause == CANCELLING:
        return CANCELLING, "cancelled: running steps were stopped, finally steps run"
    if cause == TIMING_OUT:
        return TIMING_OUT, "the run timed out: running steps were stopped, finally steps run"
    if failing is not None:
        return STOPPING, f"step {failing!r} failed: no new steps start, running ones finish"
    if awaiting:
        names = ", ".join(repr(n) for n in awaiting[:5]) + (" ..." if len(awaiting) > 5 else "")
        return "AwaitingApproval", f"waiting for approval of step {names}"
    phases = set(phase.values())
    if "Running" in phases:
        return "Running", "steps are running"
    if phases & {"Retrying", "Waiting"}:
        return "Waiting", "waiting for a retry or a rate limit"
    return "Running", "planning the next steps"


def progress(phase: dict[str, str]) -> str:
    counts = Counter(phase.values())
    done = sum(v for k, v in counts.items() if k in TERMINAL_STEP_PHASES)
    return f"{done}/{len(phase)}"


def finish_status(
    old: WorkflowRunStatus,
    *,
    steps: dict[str, StepStatus],
    phase: dict[str, str],
    dag: Dag,
    generation: int,
    now: datetime,
    result: Outcome,
    letter: DeadLetter | None,
) -> tuple[WorkflowRunStatus, EmitEvent]:
    """The terminal status, and the one 'run finished' event."""
    conditions = set_condition(
        old.conditions,
        type_=SUCCEEDED,
        status="True" if result.phase == "Succeeded" else "False",
        reason=result.reason,
        message=result.message,
        now=now,
        observed_generation=generation,
    )
    started = old.started_at or now
    status = old.model_copy(
        update={
            "phase": result.phase,
            "observed_generation": generation,
            "conditions": conditions,
            "finished_at": now,
            "duration": format_duration(max((now - started).total_seconds(), 0.0)),
            "progress": progress(phase),
            "steps": steps,
            "message": result.message,
            "dead_letter": old.dead_letter or letter,
        }
    )
    event_reason = "RunTimedOut" if result.reason == "RunTimedOut" else f"Run{result.phase}"
    if result.phase == "Succeeded":
        return status, EmitEvent(type="Normal", reason=event_reason, message=result.message)
    return status, EmitEvent(type="Warning", reason=event_reason, message=result.message)


def running_status(
    old: WorkflowRunStatus,
    *,
    steps: dict[str, StepStatus],
    phase: dict[str, str],
    dag: Dag,
    generation: int,
    now: datetime,
    cause: str | None,
    failing: str | None,
    awaiting: tuple[str, ...] = (),
) -> WorkflowRunStatus:
    reason, message = running_reason(phase, cause, failing, awaiting)
    conditions = set_condition(
        old.conditions,
        type_=SUCCEEDED,
        status="Unknown",
        reason=reason,
        message=message,
        now=now,
        observed_generation=generation,
    )
    return old.model_copy(
        update={
            "phase": "Running",
            "observed_generation": generation,
            "conditions": conditions,
            "progress": progress(phase),
            "steps": steps,
            "message": message,
        }
    )
