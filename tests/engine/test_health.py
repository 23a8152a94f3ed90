"""kstatus conditions derived from a run's phase and Succeeded condition (engine/health.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from taskforge.api.common import Condition
from taskforge.api.run import RunPhase, WorkflowRunStatus
from taskforge.engine.health import (
    health_is_current,
    run_health,
    run_health_wire,
    workflow_health,
)

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


def status(phase: RunPhase, succeeded: str, reason: str) -> WorkflowRunStatus:
    cond = Condition(type="Succeeded", status=succeeded,  # type: ignore[arg-type]
                     reason=reason, message=f"because {reason}", last_transition_time=T0)
    return WorkflowRunStatus(phase=phase, conditions=[cond], observed_generation=1)


def flags(s: WorkflowRunStatus) -> dict[str, str]:
    return {c.type: c.status for c in s.conditions or () if c.type != "Succeeded"}


# phase, Succeeded, reason -> Ready, Reconciling, Stalled, Completed
TABLE: list[tuple[RunPhase, str, str, str, str, str, str]] = [
    ("Pending", "Unknown", "RateLimited", "False", "True", "False", "False"),
    ("Pending", "Unknown", "ConcurrencyLimited", "False", "True", "False", "False"),
    ("Pending", "Unknown", "WorkflowNotFound", "False", "False", "True", "False"),
    ("Pending", "Unknown", "InvalidWorkflow", "False", "False", "True", "False"),
    ("Running", "Unknown", "Running", "False", "True", "False", "False"),
    ("Running", "Unknown", "Stopping", "False", "True", "False", "False"),
    ("Succeeded", "True", "Succeeded", "True", "False", "False", "True"),
    ("Failed", "False", "Failed", "False", "False", "True", "True"),
    ("Failed", "False", "Forbidden", "False", "False", "True", "True"),
    ("Failed", "False", "RunTimedOut", "False", "False", "True", "True"),
    ("Cancelled", "False", "Cancelled", "False", "False", "True", "True"),
]


@pytest.mark.parametrize("row", TABLE, ids=lambda r: f"{r[0]}-{r[2]}")
def test_health_of_each_phase(row: tuple[RunPhase, str, str, str, str, str, str]) -> None:
    phase, succeeded, reason, ready, reconciling, stalled, completed = row
    out = run_health(status(phase, succeeded, reason), generation=1, now=T0)
    assert flags(out) == {"Ready": ready, "Reconciling": reconciling, "Stalled": stalled,
                          "Completed": completed}
    for c in out.conditions or ():
        if c.type == "Succeeded":
            continue
        assert (c.reason, c.message, c.observed_generation) == (
            reason, f"because {reason}", 1)


def test_unchanged_input_gives_the_same_object_so_nothing_is_written() -> None:
    once = run_health(status("Running", "Unknown", "Running"), generation=1, now=T0)
    again = run_health(once, generation=1, now=T0 + timedelta(seconds=9))
    assert again is once


def moved_on(s: WorkflowRunStatus, phase: RunPhase, succeeded: str,
             reason: str) -> WorkflowRunStatus:
    """`s` after the engine set a new phase and Succeeded condition (health not yet derived)."""
    new = status(phase, succeeded, reason).conditions or []
    others = [c for c in s.conditions or () if c.type != "Succeeded"]
    return s.model_copy(update={"phase": phase, "conditions": [*new, *others]})


def test_transition_times_move_only_when_the_status_flips() -> None:
    running = run_health(status("Running", "Unknown", "Running"), generation=1, now=T0)
    later = T0 + timedelta(seconds=30)
    waiting = run_health(moved_on(running, "Running", "Unknown", "Waiting"), 1, later)
    times = {c.type: c.last_transition_time for c in waiting.conditions or ()}
    assert times["Reconciling"] == T0 and times["Ready"] == T0  # reason changed, status not
    assert {c.reason for c in waiting.conditions or ()} == {"Waiting"}
    done = run_health(moved_on(waiting, "Succeeded", "True", "Succeeded"), 1, later)
    times = {c.type: c.last_transition_time for c in done.conditions or ()}
    assert times["Ready"] == later and times["Completed"] == later
    assert times["Reconciling"] == later
    assert times["Stalled"] == T0  # False before and after


def test_observed_generation_catches_up_on_an_edited_finished_run() -> None:
    done = run_health(status("Succeeded", "True", "Succeeded"), generation=1, now=T0)
    edited = run_health(done, generation=2, now=T0)
    assert edited.observed_generation == 2
    assert {c.type: c.observed_generation for c in edited.conditions or ()} == {
        "Succeeded": None, "Ready": 2, "Reconciling": 2, "Stalled": 2, "Completed": 2}


def test_wire_form_keeps_other_conditions_and_replaces_unreadable_ones() -> None:
    conditions = [
        {"type": "LimitsApplied", "status": "True", "reason": "Enforced"},  # no time: kept as is
        {"type": "Ready", "status": "maybe"},  # unreadable: replaced
        {"type": "Succeeded", "status": "False", "reason": "StatusTooLarge", "message": "big",
         "lastTransitionTime": "2026-01-01T12:00:00Z"},
    ]
    out = run_health_wire("Failed", conditions, 3, T0)
    by_type = {c["type"]: c for c in out}
    assert by_type["LimitsApplied"] == conditions[0]
    assert by_type["Stalled"]["status"] == "True" and by_type["Ready"]["status"] == "False"
    assert by_type["Completed"] == {**by_type["Completed"], "status": "True",
                                    "reason": "StatusTooLarge", "observedGeneration": 3}


@pytest.mark.parametrize(("valid", "ready", "stalled"), [(True, "True", "False"),
                                                         (False, "False", "True")])
def test_workflow_health(valid: bool, ready: str, stalled: str) -> None:
    out = workflow_health([], valid=valid, reason="R", message="m", now=T0, generation=4)
    assert {c.type: c.status for c in out} == {"Ready": ready, "Reconciling": "False",
                                               "Stalled": stalled}
    assert all(c.observed_generation == 4 for c in out)


@pytest.mark.parametrize(("generation", "status", "current"), [
    (2, {"observedGeneration": 2, "conditions": [{"type": "Completed", "status": "True"}]}, True),
    (3, {"observedGeneration": 2, "conditions": [{"type": "Completed", "status": "True"}]}, False),
    (2, {"observedGeneration": 2, "conditions": [{"type": "Succeeded", "status": "True"}]}, False),
    (1, {}, False),
])
def test_health_is_current(generation: int, status: dict[str, Any], current: bool) -> None:
    assert health_is_current(generation, status) is current
