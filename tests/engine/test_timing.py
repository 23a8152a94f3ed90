"""Delayed runs (spec.startAt, spec.startAfter) and priorities (spec.priority): table tests of
the pure engine, and Hypothesis properties of the waiters' order. No mocks."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from enginekit import T0, at, cond, created, events, facts, step, workflow
from hypothesis import given
from hypothesis import strategies as hs
from pydantic import ValidationError
from taskforge.api.run import WorkflowRunSpec
from taskforge.engine.facts import RunAdmission
from taskforge.engine.limits import Waiter, queue_rank
from taskforge.engine.planner import plan
from taskforge.engine.timing import (
    effective_priority,
    not_before,
    queued_since,
    raw_not_before,
    raw_queued_since,
    start_time,
)

SIMPLE = workflow(step("a"))


def delayed(now: datetime = T0, **spec: Any) -> Any:
    f = facts(SIMPLE, now=now)
    return replace(f, spec=f.spec.model_copy(update=spec))


@pytest.mark.parametrize(
    ("start_at", "start_after", "expected"),
    [
        (None, None, None),
        (at(90), None, at(90)),
        (None, "90s", at(90)),
        (None, "1h30m", at(5400)),
        (None, "250ms", at(0.25)),
        (datetime(2026, 1, 1, 13, 0), None, datetime(2026, 1, 1, 13, 0, tzinfo=UTC)),  # naive: UTC
        (None, "10 minutes", at(8784 * 3600)),  # malformed (the CRD refuses it): the longest
        (None, "99999999999h", at(8784 * 3600)),  # over the cap: the cap, no overflow
    ],
)
def test_start_time(start_at: datetime | None, start_after: str | None,
                    expected: datetime | None) -> None:
    assert start_time(start_at, start_after, T0) == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [(at(0), at(60)), (at(59.999), at(60)), (at(60), None), (at(3600), None)],
)
def test_not_before_is_the_start_time_while_ahead(now: datetime, expected: datetime | None) -> None:
    assert not_before(None, "1m", T0, now) == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, None),
        ({"startAfter": "30s"}, at(30)),
        ({"startAt": "2026-01-01T12:00:45Z"}, at(45)),
        ({"startAt": "2026-01-01T12:00:45.500+00:00"}, at(45.5)),
        ({"startAt": "not a time"}, None),
        ({"startAt": 12}, None),
        ({"startAfter": 12}, None),
        ({"startAt": "2025-01-01T00:00:00Z"}, None),  # in the past: due
    ],
)
def test_raw_not_before_reads_the_cached_spec(spec: dict[str, Any],
                                              expected: datetime | None) -> None:
    assert raw_not_before(spec, T0, T0) == expected


@pytest.mark.parametrize(
    ("start_at", "start_after", "expected"),
    [
        (None, None, T0),
        (None, "1h", at(3600)),  # a delayed run queues from when it became due
        (at(-60), None, T0),  # a start time before creation: its creation
        (at(30), None, at(30)),
    ],
)
def test_queued_since(start_at: datetime | None, start_after: str | None,
                      expected: datetime) -> None:
    assert queued_since(start_at, start_after, T0) == expected
    raw = {"startAt": start_at.isoformat()} if start_at else {}
    if start_after:
        raw["startAfter"] = start_after
    assert raw_queued_since(raw, T0) == expected


def test_a_delayed_run_queues_behind_runs_that_waited_before_it_was_due() -> None:
    early_but_delayed = Waiter(queued_since(None, "1h", at(0)), "a-delayed")
    waited = Waiter(at(1800), "b-waiting")
    assert queue_rank(waited, [early_but_delayed, waited]) == 0
    assert queue_rank(early_but_delayed, [early_but_delayed, waited]) == 1


def test_delayed_run_stays_pending_scheduled_and_wakes_exactly_then_starts() -> None:
    p = plan(delayed(start_after="90s"))
    assert p.status.phase == "Pending" and p.status.started_at is None
    assert cond(p) == ("Unknown", "Scheduled")
    assert p.status.message == "scheduled to start at 2026-01-01T12:01:30.000Z"
    assert p.requeue_after == 90.0
    assert events(p) == [("Scheduled", None)]
    early = plan(replace(delayed(now=at(30), start_after="90s"), status=p.status))
    assert early.requeue_after == 60.0 and early.actions == () and early.status == p.status
    due = plan(replace(delayed(now=at(90), start_after="90s"), status=p.status))
    assert due.status.phase == "Running" and due.status.started_at == at(90)
    assert created(due) == [("a", 1)]


def test_start_at_in_the_past_starts_at_once() -> None:
    p = plan(delayed(start_at=T0 - timedelta(days=1)))
    assert p.status.phase == "Running" and created(p) == [("a", 1)]


def test_restart_recomputes_the_wake_up_from_the_spec_alone() -> None:
    """An operator that lost everything but the object gets the same instant back."""
    first = plan(delayed(now=at(10), start_at=at(100)))
    fresh = plan(delayed(now=at(40), start_at=at(100)))  # no status: a new operator's view
    assert first.requeue_after == 90.0 and fresh.requeue_after == 60.0
    assert first.status.message == fresh.status.message


def test_delayed_run_waits_even_for_a_missing_workflow() -> None:
    f = replace(delayed(start_after="1m"), workflow=None)
    p = plan(f)
    assert cond(p) == ("Unknown", "Scheduled") and p.requeue_after == 60.0


def test_cancelled_while_scheduled_ends_cancelled_without_starting() -> None:
    pending = plan(delayed(start_after="1m")).status
    p = plan(replace(delayed(now=at(5), start_after="1m", cancel=True), status=pending))
    assert p.status.phase == "Cancelled" and created(p) == []
    assert cond(p) == ("False", "Cancelled")


def test_scheduled_run_meets_no_gate_before_its_time() -> None:
    """Limits and authorization look at spec_to_start: nothing before the start time, so a
    delayed run takes no slot or token while it waits."""
    assert delayed(start_after="1m").spec_to_start() is None
    assert delayed(now=at(60), start_after="1m").spec_to_start() is not None


def test_a_refused_admission_after_the_delay_is_the_limits_reason() -> None:
    f = replace(delayed(now=at(60), start_after="1m"),
                admission=RunAdmission(False, "ConcurrencyLimited", "1 of 1 running", 2.0))
    p = plan(f)
    assert cond(p) == ("Unknown", "ConcurrencyLimited") and p.requeue_after == 2.0


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"startAt": "tomorrow"}, "startAt"),
        ({"startAfter": "10 minutes"}, "startAfter"),
        ({"startAfter": "9000h"}, "startAfter"),
        ({"startAt": "2026-01-01T00:00:00Z", "startAfter": "1s"}, "startAfter"),
        ({"priority": 1001}, "priority"),
        ({"priority": -1001}, "priority"),
        ({"priority": "high"}, "priority"),
    ],
)
def test_bad_timing_fields_are_refused_naming_the_field(bad: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        WorkflowRunSpec.model_validate({"workflowRef": {"name": "wf"}, **bad})


@pytest.mark.parametrize(
    ("run", "wf", "cap", "expected"),
    [
        (None, None, 1000, 0),
        (None, 5, 1000, 5),
        (10, 5, 1000, 10),
        (0, 5, 1000, 0),  # the run's 0 wins over the workflow's 5
        (900, None, 100, 100),  # the chart's ceiling
        (-2000, None, 1000, -1000),
        (5000, None, 5000, 1000),  # never past the CRD's range
        (True, 7, 1000, 7),  # not an integer: ignored
        ("9", None, 1000, 0),
    ],
)
def test_effective_priority(run: object, wf: object, cap: int, expected: int) -> None:
    assert effective_priority(run, wf, cap) == expected


def test_priority_ten_created_last_is_first_in_line() -> None:
    old = [Waiter(at(i), f"r{i}") for i in range(5)]
    urgent = Waiter(at(9), "r9", 10)
    assert queue_rank(urgent, [*old, urgent]) == 0
    assert [queue_rank(w, [*old, urgent]) for w in old] == [1, 2, 3, 4, 5]


def test_equal_priorities_keep_creation_order_then_name() -> None:
    same = [Waiter(at(0), "b", 3), Waiter(at(0), "a", 3), Waiter(at(1), "c", 3)]
    assert [queue_rank(w, same) for w in same] == [1, 0, 2]


waiters = hs.lists(
    hs.builds(Waiter, hs.integers(0, 50).map(at), hs.text("abc", min_size=1, max_size=3),
              hs.integers(-3, 3)),
    max_size=12, unique_by=lambda w: w.name,
)


@given(waiters)
def test_ranks_are_a_permutation_in_priority_then_creation_order(ws: list[Waiter]) -> None:
    """Every waiter gets a distinct place, and a higher priority is never behind a lower
    one; among equals, an older one is never behind a newer one."""
    ranks = {w.name: queue_rank(w, ws) for w in ws}
    assert sorted(ranks.values()) == list(range(len(ws)))
    for a in ws:
        for b in ws:
            if a.priority > b.priority or (a.priority == b.priority and a.created < b.created):
                assert ranks[a.name] < ranks[b.name]


@given(hs.integers(0, 9_999_999), hs.integers(0, 20_000_000))
def test_a_delayed_run_never_starts_early_and_wakes_exactly_at_its_time(
    delay_ms: int, now_ms: int
) -> None:
    after = f"{delay_ms}ms"
    p = plan(delayed(now=at(now_ms / 1000), start_after=after))
    if now_ms < delay_ms:
        assert p.status.phase == "Pending" and created(p) == []
        assert p.requeue_after == pytest.approx((delay_ms - now_ms) / 1000)
    else:
        assert p.status.phase == "Running" and created(p) == [("a", 1)]
