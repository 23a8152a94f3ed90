"""HeldStatuses (handlers/held.py): the window, the overlay and its resourceVersion check."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from taskforge.api.run import WorkflowRef, WorkflowRunSpec
from taskforge.api.steps import LogStep, Step
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.facts import ObservedJob, RunFacts, WorkflowFacts
from taskforge.engine.planner import plan
from taskforge.handlers.held import PRUNE_AT, HeldStatuses

KEY = ("ns", "run1")


def body(rv: str, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "run1", "resourceVersion": rv}, "status": status or {}}


def test_a_held_status_is_laid_over_the_object_it_was_planned_from() -> None:
    held = HeldStatuses(1.0)
    assert held.hold(KEY, body("5"), {"phase": "Running"}, now=100.0) == 1.0
    assert held.overlay(KEY, body("5"))["status"] == {"phase": "Running"}
    assert held.held(KEY) == {"phase": "Running"} and KEY in held


def test_another_write_of_the_run_drops_it() -> None:
    held = HeldStatuses(1.0)
    held.hold(KEY, body("5"), {"phase": "Running"}, now=100.0)
    stored = body("6", {"phase": "Pending"})
    assert held.overlay(KEY, stored) is stored
    assert held.held(KEY) is None and len(held) == 0


def test_the_window_counts_from_the_first_hold_and_then_it_must_be_written() -> None:
    held = HeldStatuses(1.0)
    assert held.hold(KEY, body("5"), {"phase": "Running", "n": 1}, now=100.0) == 1.0
    left = held.hold(KEY, body("5"), {"phase": "Running", "n": 2}, now=100.6)
    assert left is not None and abs(left - 0.4) < 1e-9
    assert held.held(KEY) == {"phase": "Running", "n": 2}
    assert held.hold(KEY, body("5"), {"phase": "Running", "n": 3}, now=101.0) is None
    assert held.held(KEY) is None  # written by the caller now


def test_a_new_object_starts_a_new_window() -> None:
    held = HeldStatuses(1.0)
    held.hold(KEY, body("5"), {"n": 1}, now=100.0)
    assert held.hold(KEY, body("7"), {"n": 2}, now=100.9) == 1.0


def test_no_window_holds_nothing() -> None:
    held = HeldStatuses(0.0)
    assert held.hold(KEY, body("5"), {"n": 1}, now=100.0) is None
    assert len(held) == 0


def test_statuses_of_runs_gone_unseen_are_pruned_not_kept_forever() -> None:
    held = HeldStatuses(1.0)
    for i in range(PRUNE_AT):
        held.hold(("ns", f"old{i}"), body("1"), {"n": i}, now=0.0)
    held.hold(KEY, body("5"), {"n": 1}, now=1000.0)
    assert len(held) == 1 and held.held(KEY) == {"n": 1}


def test_hold_if_allowed_follows_the_engine_and_counts_repeats_once() -> None:
    """Real plans (engine.planner, no mocks): a launch may wait, its repeat is not new, and
    the run's end is written at once."""
    spec = WorkflowSpec(steps=[Step(name="a", log=LogStep(message="hi"))])
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def facts(status: Any = None, jobs: tuple[ObservedJob, ...] = ()) -> RunFacts:
        return RunFacts(name="run1", namespace="ns", uid="u", generation=1, created_at=t0,
                        spec=WorkflowRunSpec(workflow_ref=WorkflowRef(name="wf")),
                        status=status, workflow=WorkflowFacts("wf", 1, "wf-uid", spec),
                        jobs=jobs, now=t0)

    def wire(status: Any) -> dict[str, Any]:
        dumped: dict[str, Any] = status.model_dump(mode="json", by_alias=True,
                                                   exclude_none=True)
        return dumped

    held = HeldStatuses(3.0)
    start = plan(facts())
    first = held.hold_if_allowed(KEY, body("5"), start.actions, None, start.status,
                                 new_status=wire(start.status), now=10.0)
    assert first is not None and (first.left, first.new) == (3.0, True)
    again = plan(facts(start.status))
    repeat = held.hold_if_allowed(KEY, body("5"), again.actions, start.status, again.status,
                                  new_status=wire(again.status), now=11.0)
    assert repeat is not None and repeat.new is False and abs(repeat.left - 2.0) < 1e-9
    done = plan(facts(start.status, (ObservedJob(
        name="run1-a-1", step="a", attempt=1, state="Succeeded", exit_code=0,
        termination_message='{"ok": true, "outputs": {}}'),)))
    assert done.status.phase == "Succeeded"
    assert held.hold_if_allowed(KEY, body("5"), done.actions, start.status, done.status,
                                new_status=wire(done.status), now=11.5) is None
