"""What one reconcile did to a run, for metrics: started, attempts ended, hand-offs, finished.

The planner decides; this tells the decision's effects apart by comparing the status before
and after it, so the handler can count them without the engine knowing about Prometheus, and
without the planner's hot path carrying metric bookkeeping. Counted only after the status
write succeeded: a conflict replans from the same old status, and nothing is counted twice.

Everything comes from status timestamps (the operator's clock, milliseconds), except the run
creation time for `first_job_seconds`, which the API server stamps in whole seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from taskforge.api import WorkflowRunStatus
from taskforge.api.results import EXIT_PERMANENT
from taskforge.api.run import TERMINAL_RUN_PHASES, TERMINAL_STEP_PHASES, StepStatus
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.conditions import SUCCEEDED, get_condition

_RUN_WAITS = {"RateLimited": "run_rate", "ConcurrencyLimited": "run_concurrency"}
"""Reasons a run is held Pending by its Workflow's limits (handlers/limits.py)."""

AttemptOutcome = str
"""succeeded, retryable, permanent, timeout or cancelled."""


@dataclass(frozen=True)
class AttemptEnded:
    step: str
    attempt: int
    type: str
    outcome: AttemptOutcome
    seconds: float | None
    """From the attempt's Job creation to its end; None when status no longer tells."""


@dataclass
class RunChanges:
    trigger: str = "manual"
    started: bool = False
    finished: str | None = None
    """The terminal phase the run reached in this reconcile."""
    run_seconds: float | None = None
    first_job_seconds: float | None = None
    handoffs: list[float] = field(default_factory=list)
    attempts: list[AttemptEnded] = field(default_factory=list)
    steps_finished: list[tuple[str, str]] = field(default_factory=list)
    """(step type, terminal phase) of each step that ended."""
    waits: list[str] = field(default_factory=list)
    """run_rate, run_concurrency (the run began to wait), or step_rate, step_concurrency (per
    step that began to wait)."""
    dead_letter_recorded: bool = False
    dead_letter_shipped: bool = False

    @property
    def any(self) -> bool:
        """Whether there is anything to count (most reconciles of a run change nothing)."""
        return bool(self.started or self.finished or self.first_job_seconds is not None
                    or self.handoffs or self.attempts or self.steps_finished or self.waits
                    or self.dead_letter_recorded or self.dead_letter_shipped)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def outcome(st: StepStatus) -> AttemptOutcome:
    """How the attempt that just ended went, from the step status it left behind."""
    if st.phase == "Succeeded":
        return "succeeded"
    if st.failure == "TimedOut":
        return "timeout"
    if st.phase == "Cancelled":
        return "cancelled"
    if st.phase == "Failed" and (st.exit_code == EXIT_PERMANENT or st.failure == "TemplateLimit"):
        return "permanent"
    return "retryable"  # a retry follows, or the retries ran out


def attempt_seconds(st: StepStatus, attempt: int) -> float | None:
    """How long `attempt` ran: from its history record, or the step's own times."""
    for record in reversed(st.attempt_history or ()):
        if record.attempt == attempt:
            return _seconds(record.started_at, record.finished_at)
    if attempt == 1:
        return _seconds(st.started_at, st.finished_at)
    return None


def _held(status: WorkflowRunStatus | None) -> str | None:
    """run_rate or run_concurrency while the run waits for its Workflow's limits."""
    if status is None or status.phase != "Pending":
        return None
    condition = get_condition(status.conditions, SUCCEEDED)
    return _RUN_WAITS.get(condition.reason) if condition is not None else None


def _step_types(spec: WorkflowSpec | None) -> dict[str, str]:
    return {s.name: s.step_type for s in spec.all_steps} if spec is not None else {}


def run_changes(
    old: WorkflowRunStatus | None, new: WorkflowRunStatus, *, trigger: str, created_at: datetime
) -> RunChanges:
    """The effects of one reconcile: `old` is the status it read, `new` the one it wrote."""
    changes = RunChanges(trigger=trigger)
    if old is new:
        return changes
    if new.started_at is not None and (old is None or old.started_at is None):
        changes.started = True
    if new.phase in TERMINAL_RUN_PHASES and (old is None or old.phase != new.phase):
        changes.finished = new.phase
        changes.run_seconds = _seconds(new.started_at or created_at, new.finished_at)
    held = _held(new)
    if held is not None and held != _held(old):
        changes.waits.append(held)
    old_steps = (old.steps if old is not None else None) or {}
    types: dict[str, str] | None = None
    launched_before = any(s.attempts for s in old_steps.values())
    first_launch: datetime | None = None
    spec = new.workflow_spec
    for name, st in (new.steps or {}).items():
        was = old_steps.get(name)
        if st is was:
            continue
        was_phase = was.phase if was is not None else "Pending"
        was_attempts = was.attempts if was is not None else 0
        if st.phase == was_phase and st.attempts == was_attempts:
            continue
        if types is None:
            types = _step_types(spec)
        step_type = types.get(name, "unknown")
        if was_phase == "Running" and (st.phase != "Running" or st.attempts > was_attempts):
            ended = st if st.phase != "Running" else StepStatus(phase="Retrying")
            changes.attempts.append(AttemptEnded(
                name, was_attempts, step_type, outcome(ended), attempt_seconds(st, was_attempts)))
        if st.phase in TERMINAL_STEP_PHASES and was_phase not in TERMINAL_STEP_PHASES:
            changes.steps_finished.append((step_type, st.phase))
        if st.phase == "Waiting" and was_phase != "Waiting":
            changes.waits.append("step_rate" if st.wait_until else "step_concurrency")
        if was_attempts == 0 and st.attempts > 0 and st.started_at is not None:
            if first_launch is None or st.started_at < first_launch:
                first_launch = st.started_at
            handoff = _handoff(spec, name, st.started_at, new)
            if handoff is not None:
                changes.handoffs.append(handoff)
    if first_launch is not None and not launched_before:
        changes.first_job_seconds = _seconds(created_at, first_launch)
    letter, old_letter = new.dead_letter, old.dead_letter if old is not None else None
    if letter is not None:
        changes.dead_letter_recorded = old_letter is None
        changes.dead_letter_shipped = letter.shipped and not (old_letter and old_letter.shipped)
    return changes


def _handoff(
    spec: WorkflowSpec | None, name: str, launched: datetime, status: WorkflowRunStatus
) -> float | None:
    """From the end of the step's last dependency to its launch; None without dependencies."""
    if spec is None:
        return None
    step = next((s for s in spec.all_steps if s.name == name), None)
    if step is None or not step.depends_on:
        return None
    steps = status.steps or {}
    ends = [(steps.get(dep) or StepStatus()).finished_at for dep in step.depends_on]
    if any(end is None for end in ends):
        return None
    return _seconds(max(e for e in ends if e is not None), launched)
