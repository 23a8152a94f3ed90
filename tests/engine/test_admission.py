"""Table tests: a run the limits hold back waits Pending, says why, and starts when admitted."""

from __future__ import annotations

from dataclasses import replace

import pytest
from taskforge.engine.actions import CreateJob, EmitEvent
from taskforge.engine.facts import RunAdmission
from taskforge.engine.planner import plan

from tests.engine.enginekit import at, facts, step, workflow

SPEC = workflow(step("a"), step("b", "a"))
LIMITED = RunAdmission(False, "RateLimited", "rate limit 2 per 1m: waiting until 12:00:30Z",
                       retry_after=30.0)
BUSY = RunAdmission(False, "ConcurrencyLimited", "2 of 2 runs running; 3rd in line", 5.0)


@pytest.mark.parametrize(
    ("admission", "phase", "reason", "creates", "requeue"),
    [
        (None, "Running", "Running", 1, None),
        (RunAdmission(True), "Running", "Running", 1, None),
        (LIMITED, "Pending", "RateLimited", 0, 30.0),
        (BUSY, "Pending", "ConcurrencyLimited", 0, 5.0),
    ],
    ids=["no limits", "admitted", "rate limited", "no slot"],
)
def test_run_start_is_gated_by_admission(
    admission: RunAdmission | None, phase: str, reason: str, creates: int,
    requeue: float | None,
) -> None:
    result = plan(replace(facts(SPEC), admission=admission))
    assert result.status.phase == phase
    succeeded = next(c for c in result.status.conditions or [] if c.type == "Succeeded")
    assert succeeded.status == "Unknown" and succeeded.reason == reason
    assert sum(isinstance(a, CreateJob) for a in result.actions) == creates
    assert result.requeue_after == requeue
    if admission is not None and not admission.allowed:
        assert result.status.message == admission.message
        assert result.status.started_at is None and not result.status.steps


def test_waiting_event_only_once_then_start_when_admitted() -> None:
    first = plan(replace(facts(SPEC), admission=LIMITED))
    assert [a.reason for a in first.actions if isinstance(a, EmitEvent)] == ["RateLimited"]
    again = plan(replace(facts(SPEC, first.status, now=at(10)), admission=LIMITED))
    assert not again.actions
    started = plan(replace(facts(SPEC, again.status, now=at(30)), admission=RunAdmission(True)))
    assert started.status.phase == "Running"
    assert [a.step for a in started.actions if isinstance(a, CreateJob)] == ["a"]


def test_cancel_while_held_back_ends_cancelled() -> None:
    held = plan(replace(facts(SPEC), admission=BUSY))
    result = plan(replace(facts(SPEC, held.status, now=at(3), cancel=True), admission=BUSY))
    assert result.status.phase == "Cancelled"
    assert not any(isinstance(a, CreateJob) for a in result.actions)


def test_admission_is_ignored_once_the_run_runs() -> None:
    running = plan(facts(SPEC))
    result = plan(replace(facts(SPEC, running.status, now=at(1)), admission=LIMITED))
    assert result.status.phase == "Running"
