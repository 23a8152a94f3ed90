"""Retries in time: Retrying status, nextAttemptAt, requeue, run deadline, cancellation."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from enginekit import (
    T0,
    Cluster,
    at,
    cond,
    created,
    deletes,
    events,
    facts,
    fail,
    job,
    ok,
    phases,
    result_json,
    retry,
    st,
    step,
    workflow,
)
from taskforge.api.run import StepStatus
from taskforge.api.steps import RetryPolicy
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.actions import Plan
from taskforge.engine.naming import job_name
from taskforge.engine.planner import plan


def started(spec: WorkflowSpec) -> Plan:
    return plan(facts(spec))


@pytest.mark.parametrize(
    ("policy", "attempt", "wait"),
    [
        (retry(3), 1, 10.0),
        (retry(3), 2, 20.0),
        (retry(3), 3, 40.0),
        (retry(5, delay="1m", max_delay="3m"), 4, 180.0),
        (retry(3, delay="7s", kind="fixed"), 3, 7.0),
    ],
)
def test_failed_attempt_waits_for_the_backoff(
    policy: RetryPolicy, attempt: int, wait: float
) -> None:
    spec = workflow(step("a", retry=policy))
    status = started(spec).status
    steps = dict(status.steps or {})
    steps["a"] = StepStatus(phase="Running", attempts=attempt,
                            job_name=job_name("run1", "a", attempt), started_at=T0)
    status = status.model_copy(update={"steps": steps})
    p = plan(facts(spec, status, [fail("a", attempt)], now=at(100)))
    a = st(p, "a")
    assert a.phase == "Retrying" and a.next_attempt_at == at(100 + wait)
    assert a.exit_code == 75 and a.failure == "Failed"
    assert p.requeue_after == wait and created(p) == []
    assert events(p) == [("StepRetrying", "a")]
    assert cond(p) == ("Unknown", "Waiting")
    # Not yet due: nothing starts, the requeue shrinks.
    early = plan(facts(spec, p.status, [fail("a", attempt)], now=at(100 + wait - 1)))
    assert created(early) == [] and early.requeue_after == 1.0 and early.status == p.status
    # Due: the next attempt starts, with its own deterministic Job name.
    due = plan(facts(spec, p.status, [fail("a", attempt)], now=at(100 + wait)))
    assert created(due) == [("a", attempt + 1)]
    assert due.actions[0].job_name == f"run1-a-{attempt + 1}"  # type: ignore[union-attr]
    assert st(due, "a").phase == "Running" and st(due, "a").started_at == T0


def test_retry_after_hint_is_a_lower_bound() -> None:
    spec = workflow(step("a", retry=retry(2, delay="1s")))
    first = started(spec)
    hint = fail("a", message=result_json(False, error="429", retry_after=45))
    p = plan(facts(spec, first.status, [hint], now=at(5)))
    assert st(p, "a").next_attempt_at == at(50) and p.requeue_after == 45.0
    assert st(p, "a").message == "attempt 1 failed: 429; attempt 2 in 45s"


@pytest.mark.parametrize(("step_events", "expected"), [
    ("default", [("StepRetrying", "a")]),
    ("all", [("StepRetrying", "a"), ("StepStarted", "a")]),
])
def test_zero_delay_retry_starts_in_the_same_reconcile(
    step_events: str, expected: list[tuple[str, str]]
) -> None:
    spec = workflow(step("a", retry=retry(2, delay="0s")), step_events=step_events)
    first = started(spec)
    p = plan(facts(spec, first.status, [fail("a")], now=at(3)))
    assert created(p) == [("a", 2)]
    assert events(p) == expected


def test_requeue_is_the_earliest_of_retry_and_deadline() -> None:
    spec = workflow(step("a", retry=retry(2, delay="5m")), step("b"), timeout="2m")
    first = started(spec)
    assert first.requeue_after == 120.0
    p = plan(facts(spec, first.status, [fail("a"), job("b")], now=at(30)))
    assert p.requeue_after == 90.0  # deadline at 120 s before the retry at 330 s


def test_nothing_timed_means_no_requeue() -> None:
    p = started(workflow(step("a")))
    assert p.requeue_after is None


def test_run_timeout_stops_main_steps_then_runs_finally() -> None:
    spec = workflow(step("a"), step("b", "a"), step("c"), final=[step("f")], timeout="1m")
    first = started(spec)
    mid = plan(facts(spec, first.status, [ok("a"), job("c")], now=at(10)))
    assert phases(mid) == {"a": "Succeeded", "b": "Running", "c": "Running", "f": "Pending"}
    late = plan(facts(spec, mid.status, [ok("a"), job("b"), job("c")], now=at(60)))
    assert sorted(deletes(late)) == ["run1-b-1", "run1-c-1"]
    assert phases(late) == {"a": "Succeeded", "b": "Cancelled", "c": "Cancelled",
                            "f": "Running"}
    assert cond(late) == ("Unknown", "TimingOut")
    assert ("RunTimingOut", None) in events(late)
    # The finally step may take longer than the deadline; the run then ends RunTimedOut.
    done = plan(facts(spec, late.status, [ok("a"), ok("f")], now=at(600)))
    assert done.status.phase == "Failed" and cond(done) == ("False", "RunTimedOut")
    assert done.status.message == "the run timed out after 1m"
    assert done.status.duration == "10m" and done.status.dead_letter is None


def test_deadline_does_not_apply_once_main_steps_are_done() -> None:
    spec = workflow(step("a"), final=[step("f")], timeout="1m")
    c = Cluster(facts(spec))
    c.reconcile()
    c.finish()
    c.now = at(30)
    p = c.reconcile()
    assert phases(p) == {"a": "Succeeded", "f": "Running"} and p.requeue_after is None
    c.now = at(500)
    p = c.reconcile()
    assert deletes(p) == [] and phases(p)["f"] == "Running"
    c.finish()
    assert c.reconcile().status.phase == "Succeeded"


def test_cancel_mid_run() -> None:
    spec = workflow(step("a"), step("b", "a"), step("r", retry=retry(3)), step("w"),
                    final=[step("f"), step("g", "f")])
    first = started(spec)
    mid = plan(facts(spec, first.status, [job("a"), fail("r"), ok("w")], now=at(5)))
    assert phases(mid)["r"] == "Retrying"
    p = plan(facts(spec, mid.status, [job("a"), fail("r"), ok("w")], now=at(6), cancel=True))
    assert deletes(p) == ["run1-a-1"]
    assert phases(p) == {"a": "Cancelled", "b": "Cancelled", "r": "Cancelled",
                         "w": "Succeeded", "f": "Running", "g": "Pending"}
    assert cond(p) == ("Unknown", "Cancelling") and p.requeue_after is None
    assert ("RunCancelling", None) in events(p)
    # The latch holds: finally steps keep running although spec.cancel stays true.
    jobs = [job("a", state="Failed", failure="PodFailure"), ok("f")]
    p2 = plan(facts(spec, p.status, jobs, now=at(7), cancel=True))
    assert created(p2) == [("g", 1)] and deletes(p2) == []
    p3 = plan(facts(spec, p2.status, [*jobs, ok("g")], now=at(8), cancel=True))
    assert p3.status.phase == "Cancelled" and cond(p3) == ("False", "Cancelled")
    assert events(p3)[-1] == ("RunCancelled", None)


def test_cancel_while_finally_steps_run_stops_them_too() -> None:
    spec = workflow(step("a"), final=[step("f"), step("g", "f")])
    c = Cluster(facts(spec))
    c.reconcile()
    c.finish()
    p = c.reconcile()
    assert phases(p)["f"] == "Running"
    c.base = replace(c.base, spec=c.base.spec.model_copy(update={"cancel": True}))
    p = c.reconcile()
    assert deletes(p) == ["run1-f-1"]
    assert phases(p) == {"a": "Succeeded", "f": "Cancelled", "g": "Cancelled"}
    assert p.status.phase == "Cancelled"


def test_cancel_before_anything_ran() -> None:
    spec = workflow(step("a"), final=[step("f")])
    p = plan(facts(spec, cancel=True))
    assert phases(p) == {"a": "Cancelled", "f": "Running"}
    assert deletes(p) == []  # the first reconcile created nothing to delete


def test_failing_run_lets_running_steps_finish_but_not_retry() -> None:
    spec = workflow(step("a"), step("b", retry=retry(3)), step("c", retry=retry(3)),
                    step("d", "a"))
    first = started(spec)
    p = plan(facts(spec, first.status, [fail("a", code=78), job("b"), fail("c")], now=at(1)))
    assert phases(p) == {"a": "Failed", "b": "Running", "c": "Cancelled", "d": "Skipped"}
    assert cond(p) == ("Unknown", "Stopping") and deletes(p) == []
    assert st(p, "c").message == (
        "attempt 1 failed: boom c#1; not retried: the run is failing (step 'a' failed)")
    done = plan(facts(spec, p.status, [fail("a", code=78), ok("b"), fail("c")], now=at(2)))
    assert done.status.phase == "Failed" and phases(done)["b"] == "Succeeded"
    assert done.status.dead_letter is not None and done.status.dead_letter.step == "a"


def test_retrying_step_is_cancelled_when_another_step_fails() -> None:
    spec = workflow(step("a"), step("r", retry=retry(3, delay="1h")))
    first = started(spec)
    mid = plan(facts(spec, first.status, [job("a"), fail("r")], now=at(1)))
    assert phases(mid)["r"] == "Retrying"
    p = plan(facts(spec, mid.status, [fail("a", code=78), fail("r")], now=at(2)))
    assert phases(p) == {"a": "Failed", "r": "Cancelled"} and p.status.phase == "Failed"
    assert st(p, "r").message == (
        "attempt 1 failed; not retried: the run is failing (step 'a' failed)")


def test_waiting_step_starts_when_its_wait_is_over() -> None:
    """A step the adapter held back (rate limit) is launched once `waitUntil` passed."""
    spec = workflow(step("a"))
    first = started(spec)
    steps = dict(first.status.steps or {})
    steps["a"] = StepStatus(phase="Waiting", wait_until=at(30), message="rate limited")
    status = first.status.model_copy(update={"steps": steps})
    p = plan(facts(spec, status, now=at(10)))
    assert created(p) == [] and p.requeue_after == 20.0
    p = plan(facts(spec, status, now=at(30)))
    assert created(p) == [("a", 1)] and st(p, "a").wait_until is None


def test_timestamps_come_from_jobs_when_known() -> None:
    spec = workflow(step("a"))
    first = started(spec)
    finished = T0 + timedelta(seconds=42)
    p = plan(facts(spec, first.status, [job("a", state="Succeeded", finished=finished)],
                   now=at(50)))
    assert st(p, "a").finished_at == finished and p.status.finished_at == at(50)
    assert p.status.duration == "50s"


def test_the_earliest_failure_is_named_and_replans_agree() -> None:
    """A running step fails after another failed: messages keep naming the first failure."""
    spec = workflow(step("early"), step("late"), step("next", "early", "late"))
    first = started(spec)
    p1 = plan(facts(spec, first.status, [job("early"), fail("late", code=78)], now=at(1)))
    assert cond(p1) == ("Unknown", "Stopping")
    jobs = [fail("early", code=78), fail("late", code=78)]
    p2 = plan(facts(spec, p1.status, jobs, now=at(2)))
    assert p2.status.phase == "Failed" and p2.status.dead_letter is not None
    assert p2.status.dead_letter.step == "late"
    assert st(p1, "next").message == "dependency 'late' failed"
    again = plan(facts(spec, p1.status, [job("early"), fail("late", code=78)], now=at(1)))
    assert again.status == p1.status and again.actions == ()
    # The early step fails later; a replan of that status names the same steps.
    replan = plan(facts(spec, p2.status, jobs, now=at(3)))
    assert replan.status is p2.status


def test_a_later_failure_earlier_in_dag_order_does_not_rename_the_cause() -> None:
    spec = workflow(step("y"), step("x"), step("w"))
    first = started(spec)
    p1 = plan(facts(spec, first.status, [job("y"), fail("x", code=78, finished=at(1)),
                                         job("w")], now=at(1)))
    jobs = [fail("y", code=78, finished=at(2)), fail("x", code=78, finished=at(1)), job("w")]
    p2 = plan(facts(spec, p1.status, jobs, now=at(2)))
    assert p2.status.message == "step 'x' failed: no new steps start, running ones finish"
    replan = plan(facts(spec, p2.status, jobs, now=at(3)))
    assert replan.status == p2.status and replan.actions == ()
