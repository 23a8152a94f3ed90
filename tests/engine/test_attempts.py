"""Exact times and attempt history (issue 12, defects 4 and 5), as table tests of `plan()`.

Status times carry milliseconds, the backoff wakes at the computed instant, each attempt of a
retried step is recorded, and an HTTP status listed in `retry.httpStatus` is retried.
"""

from __future__ import annotations

import json

import pytest
from enginekit import (
    T0,
    at,
    created,
    facts,
    fail,
    http,
    job,
    ok,
    result_json,
    retry,
    st,
    step,
    workflow,
)
from taskforge.api.durations import format_duration, format_timestamp
from taskforge.api.run import MAX_ATTEMPT_HISTORY, AttemptRecord, WorkflowRunStatus
from taskforge.api.steps import RetryPolicy
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.actions import Plan
from taskforge.engine.attempts import end_time, history_limit
from taskforge.engine.facts import ObservedJob
from taskforge.engine.planner import plan


def _run(spec: WorkflowSpec, outcomes: list[tuple[float, float, str]]) -> Plan:
    """Plan step `a` through attempts, each (launched at, end observed at, 'ok' | 'fail');
    the kubelet reports each end in whole seconds, as it does."""
    status: WorkflowRunStatus | None = None
    jobs: list[ObservedJob] = []
    p = None
    for attempt, (launched, ended, how) in enumerate(outcomes, start=1):
        p = plan(facts(spec, status, jobs, now=at(launched)))
        assert created(p) == [("a", attempt)], p.actions
        kubelet = at(int(ended))
        if how == "ok":
            done = job("a", attempt, "Succeeded", message=result_json(True), finished=kubelet)
        else:
            done = fail("a", attempt, finished=kubelet)
        jobs = [*jobs, done]
        p = plan(facts(spec, p.status, jobs, now=at(ended)))
        status = p.status
    assert p is not None
    return p


# --- exact times ------------------------------------------------------------------------------


def test_a_44ms_step_reads_44ms() -> None:
    """Before: started and finished were whole seconds, so the step and the run read 0ms
    (or 1s when the second turned). The kubelet's finishedAt is whole seconds; the
    operator's own observation within that second is the time kept."""
    spec = workflow(step("a"))
    p = _run(spec, [(0.123456, 0.167, "ok")])
    a = st(p, "a")
    assert a.started_at == at(0.123) and a.finished_at == at(0.167)
    assert p.status.duration == "44ms"  # the run began at 0.123 too (the first plan)
    assert p.status.started_at == at(0.123)
    wire = p.status.to_k8s()
    assert wire["steps"]["a"]["startedAt"] == "2026-01-01T12:00:00.123Z"
    assert wire["steps"]["a"]["finishedAt"] == "2026-01-01T12:00:00.167Z"
    assert wire["finishedAt"] == "2026-01-01T12:00:00.167Z"
    # Conditions keep whole seconds (metav1.Time for Go clients).
    assert all(c["lastTransitionTime"] == "2026-01-01T12:00:00Z" for c in wire["conditions"])
    # And the status reads back equal: an idle replan writes nothing.
    assert WorkflowRunStatus.model_validate(wire) == p.status


@pytest.mark.parametrize(
    ("reported", "observed", "kept"),
    [
        (None, 3.25, 3.25),
        (3.0, 3.25, 3.25),  # seen within the kubelet's second: the observation
        (3.0, 3.999, 3.999),
        (3.0, 4.0, 3.0),  # seen later (a restart, a busy queue): the kubelet's second
        (3.0, 60.0, 3.0),
        (3.0, 2.9, 2.9),  # the node's clock ahead of the operator's: the operator's
    ],
)
def test_end_time(reported: float | None, observed: float, kept: float) -> None:
    assert end_time(None if reported is None else at(reported), at(observed)) == at(kept)


def test_timestamps_have_milliseconds() -> None:
    assert format_timestamp(at(0.123456)) == "2026-01-01T12:00:00.123Z"
    assert format_timestamp(T0) == "2026-01-01T12:00:00.000Z"
    assert format_duration(1.44) == "1.4s" and format_duration(0.044) == "44ms"
    assert format_duration(90) == "1m30s" and format_duration(10) == "10s"


@pytest.mark.parametrize(("delay", "now"), [("1s", 100.2345), ("2s", 100.2345), ("1s", 7.0)])
def test_backoff_wakes_at_the_computed_instant(delay: str, now: float) -> None:
    """Before: nextAttemptAt was rounded up to the next whole second, so a 1 s wait after a
    failure seen at x.2345 s lasted 1.77 s."""
    spec = workflow(step("a", retry=retry(3, delay=delay, kind="fixed")))
    first = plan(facts(spec))
    p = plan(facts(spec, first.status, [fail("a")], now=at(now)))
    wait = float(delay[:-1])
    due = st(p, "a").next_attempt_at
    assert due is not None
    assert 0 <= (due - at(now + wait)).total_seconds() < 0.001  # to the millisecond, never early
    assert p.requeue_after == pytest.approx(wait, abs=0.001)
    # At that instant the next attempt starts.
    later = plan(facts(spec, p.status, [fail("a")], now=due))
    assert created(later) == [("a", 2)]


# --- attempt history --------------------------------------------------------------------------


def test_a_step_run_once_has_no_history() -> None:
    p = _run(workflow(step("a")), [(0, 0.5, "ok")])
    assert st(p, "a").attempt_history is None and st(p, "a").attempts == 1


def test_each_attempt_of_a_retried_step_is_recorded() -> None:
    spec = workflow(step("a", retry=retry(3, delay="1s", kind="fixed")))
    p = _run(spec, [(0.1, 0.3, "fail"), (1.301, 1.5, "fail"), (2.5, 2.75, "ok")])
    a = st(p, "a")
    assert a.phase == "Succeeded" and a.attempts == 3
    assert a.started_at == at(0.1) and a.finished_at == at(2.75)
    assert a.attempt_history == [
        AttemptRecord(attempt=1, started_at=at(0.1), finished_at=at(0.3), exit_code=75,
                      reason="Failed", message="boom a#1"),
        AttemptRecord(attempt=2, started_at=at(1.301), finished_at=at(1.5), exit_code=75,
                      reason="Failed", message="boom a#2"),
        AttemptRecord(attempt=3, started_at=at(2.5), finished_at=at(2.75), exit_code=0,
                      reason="Succeeded"),
    ]
    wire = p.status.to_k8s()["steps"]["a"]
    assert wire["attempts"] == 3  # still the count, for existing readers
    assert wire["attemptHistory"][1] == {
        "attempt": 2, "startedAt": "2026-01-01T12:00:01.301Z",
        "finishedAt": "2026-01-01T12:00:01.500Z", "exitCode": 75, "reason": "Failed",
        "message": "boom a#2",
    }


def test_the_running_attempt_is_listed_and_a_failure_for_good_is_recorded() -> None:
    spec = workflow(step("a", retry=retry(1, delay="1s", kind="fixed")))
    p = _run(spec, [(0, 0.2, "fail"), (1.2, 1.9, "fail")])
    a = st(p, "a")
    assert a.phase == "Failed"
    assert [(r.attempt, r.reason, r.finished_at) for r in a.attempt_history or ()] == [
        (1, "Failed", at(0.2)), (2, "Failed", at(1.9))]
    mid = plan(facts(spec, None, [], now=T0))
    mid = plan(facts(spec, mid.status, [fail("a")], now=at(0.2)))
    running = plan(facts(spec, mid.status, [fail("a")], now=at(1.2)))
    assert [(r.attempt, r.finished_at) for r in st(running, "a").attempt_history or ()] == [
        (1, at(0.2)), (2, None)]


def test_history_is_bounded_and_keeps_the_latest() -> None:
    spec = workflow(step("a", retry=retry(20, delay="1s", kind="fixed")))
    outcomes = [(float(2 * i), 2 * i + 0.5, "fail") for i in range(14)] + [(28.0, 28.5, "ok")]
    a = st(_run(spec, outcomes), "a")
    history = a.attempt_history or []
    assert len(history) == MAX_ATTEMPT_HISTORY
    assert [r.attempt for r in history] == list(range(6, 16))  # attempts 1-5 counted only
    assert a.attempts == 15


def test_history_messages_are_short() -> None:
    spec = workflow(step("a", retry=retry(1, delay="1s")))
    first = plan(facts(spec))
    long = fail("a", message=result_json(False, error="x" * 500))
    p = plan(facts(spec, first.status, [long], now=at(1)))
    (record,) = st(p, "a").attempt_history or []
    assert record.message is not None and len(record.message) == 128
    assert record.message.endswith("\u2026")


@pytest.mark.parametrize(("steps", "limit"), [(1, 10), (50, 10), (100, 5), (250, 2),
                                               (1000, 2)])
def test_history_limit_shrinks_in_big_runs(steps: int, limit: int) -> None:
    assert history_limit(steps) == limit


def test_a_cancelled_attempt_is_recorded() -> None:
    spec = workflow(step("a", retry=retry(2, delay="1s", kind="fixed")))
    first = plan(facts(spec))
    retrying = plan(facts(spec, first.status, [fail("a")], now=at(0.5)))
    second = plan(facts(spec, retrying.status, [fail("a")], now=at(1.5)))
    cancelled = plan(facts(spec, second.status, [fail("a"), job("a", 2)], now=at(2.25),
                           cancel=True))
    history = st(cancelled, "a").attempt_history or []
    assert [(r.attempt, r.reason, r.finished_at) for r in history] == [
        (1, "Failed", at(0.5)), (2, "Cancelled", at(2.25))]


def test_a_1000_step_run_pays_nothing_for_history_when_nothing_retries() -> None:
    steps = [step(f"s{i}") for i in range(1000)]
    spec = workflow(*steps)
    p = plan(facts(spec, now=at(0.5)))
    jobs = [ok(f"s{i}") for i in range(1000)]
    done = plan(facts(spec, p.status, jobs, now=at(1.25)))
    assert all(s.attempt_history is None for s in (done.status.steps or {}).values())
    per_step = len(json.dumps(done.status.to_k8s()["steps"], separators=(",", ":"))) / 1000
    assert per_step < 200, per_step


# --- retry by HTTP status ---------------------------------------------------------------------

NOT_FOUND = result_json(False, error="GET http://x/: HTTP 404 Not Found (accepted: 2xx)",
                        retryable=False)


def _not_found(attempt: int = 1) -> ObservedJob:
    message = json.dumps({**json.loads(NOT_FOUND), "httpStatus": 404})
    return fail("a", attempt, code=78, message=message)


@pytest.mark.parametrize(
    ("policy", "phase"),
    [
        (retry(2), "Failed"),  # the default: a 404 is permanent
        (RetryPolicy(limit=2, on=["Failed", "HTTPStatus"], http_status=[404]), "Retrying"),
        (RetryPolicy(limit=2, on=["HTTPStatus"], http_status=[409]), "Failed"),
    ],
)
def test_a_404_is_retried_only_when_listed(policy: RetryPolicy, phase: str) -> None:
    spec = workflow(http("a", url="http://x/", retry=policy))
    first = plan(facts(spec))
    p = plan(facts(spec, first.status, [_not_found()], now=at(1)))
    assert st(p, "a").phase == phase
    if phase == "Failed":
        assert "permanent failure (HTTP 404)" in (st(p, "a").message or "")
