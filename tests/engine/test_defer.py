"""Holding back a launch for a rate limit: Waiting, then the same attempt later."""

from __future__ import annotations

from enginekit import T0, at, created, events, facts, fail, retry, st, step, workflow
from taskforge.engine.defer import hold_back
from taskforge.engine.planner import plan


def test_held_back_first_attempt_waits_and_is_offered_again() -> None:
    spec = workflow(step("a"), step("b"), step_events="all")
    p = plan(facts(spec))
    held = hold_back(p, step="a", run_name="run1", until=at(30), now=T0,
                     reason="rate limit github-api: 30 per 1m")
    assert created(held) == [("b", 1)]
    assert ("StepStarted", "a") not in events(held) and ("StepStarted", "b") in events(held)
    a = st(held, "a")
    assert (a.phase, a.attempts, a.job_name, a.started_at, a.wait_until) == (
        "Waiting", 0, None, None, at(30))
    assert held.requeue_after == 30.0
    early = plan(facts(spec, held.status, now=at(10)))
    assert created(early) == [("b", 1)] and early.requeue_after == 20.0
    due = plan(facts(spec, held.status, now=at(30)))
    assert ("a", 1) in created(due) and st(due, "a").phase == "Running"


def test_held_back_retry_keeps_its_attempt_number() -> None:
    spec = workflow(step("a", retry=retry(2, delay="0s")))
    first = plan(facts(spec))
    p = plan(facts(spec, first.status, [fail("a")], now=at(1)))
    assert created(p) == [("a", 2)]
    held = hold_back(p, step="a", run_name="run1", until=at(5), now=at(1), reason="limited")
    a = st(held, "a")
    assert (a.phase, a.attempts, a.job_name, a.started_at) == ("Waiting", 1, "run1-a-1", T0)
    due = plan(facts(spec, held.status, [fail("a")], now=at(5)))
    assert created(due) == [("a", 2)]


def test_repeated_creates_and_unknown_steps_are_not_held_back() -> None:
    spec = workflow(step("a"))
    p = plan(facts(spec))
    again = plan(facts(spec, p.status, now=at(1)))
    assert hold_back(again, step="a", run_name="run1", until=at(9), now=at(1),
                     reason="x") is again
    assert hold_back(p, step="zzz", run_name="run1", until=at(9), now=T0, reason="x") is p
