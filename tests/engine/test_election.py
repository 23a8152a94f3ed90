"""Leader election decisions (engine/election.py): client-go's rules, time as a parameter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from taskforge.engine.election import (
    LeaseRecord,
    Observed,
    Timing,
    Verdict,
    decide,
    desired,
    observe,
    released,
    still_leading,
)

T = Timing(lease_duration=10.0, renew_deadline=7.0, retry_period=2.0)
WALL = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
HELD = LeaseRecord("other", 10, WALL, WALL, 3, "100")
MINE = LeaseRecord("me", 10, WALL, WALL, 3, "100")
FREE = LeaseRecord(None, 1, WALL, WALL, 3, "100")


@pytest.mark.parametrize(
    ("record", "since", "now", "verdict"),
    [
        (None, 0.0, 0.0, Verdict.CREATE),  # no Lease yet
        (MINE, 0.0, 100.0, Verdict.RENEW),  # ours, however long ago
        (FREE, 0.0, 0.0, Verdict.ACQUIRE),  # released: take it at once
        (LeaseRecord("", 10, None, None, 0, "5"), 0.0, 0.0, Verdict.ACQUIRE),  # empty holder
        (HELD, 0.0, 0.0, Verdict.WAIT),  # just seen
        (HELD, 0.0, 9.99, Verdict.WAIT),  # unchanged, but not yet for a term
        (HELD, 0.0, 10.0, Verdict.ACQUIRE),  # unchanged for a whole term: expired
        (HELD, 5.0, 14.0, Verdict.WAIT),  # seen changed at 5: the term counts from there
        (LeaseRecord("other", 30, WALL, WALL, 0, "1"), 0.0, 20.0, Verdict.WAIT),  # its term
        (LeaseRecord("other", None, None, None, 0, "1"), 0.0, 10.0, Verdict.ACQUIRE),  # ours
    ],
)
def test_decide(record: LeaseRecord | None, since: float, now: float, verdict: Verdict) -> None:
    version = record.resource_version if record else None
    assert decide(record, "me", Observed(version, since), now, T) is verdict


def test_a_renewed_lease_is_never_taken_even_with_an_old_renew_time() -> None:
    """Only the local clock counts: a leader whose renewTime reads an hour ago (clock skew)
    but whose Lease keeps changing is still the leader."""
    seen = observe(None, HELD, 0.0)
    for step in range(1, 20):
        renewed = LeaseRecord("other", 10, WALL - timedelta(hours=1),
                              WALL - timedelta(hours=1), 3, str(100 + step))
        seen = observe(seen, renewed, step * 2.0)
        assert decide(renewed, "me", seen, step * 2.0, T) is Verdict.WAIT


@pytest.mark.parametrize(
    ("previous", "record", "now", "expected"),
    [
        (None, HELD, 3.0, Observed("100", 3.0)),
        (Observed("100", 1.0), HELD, 3.0, Observed("100", 1.0)),  # unchanged: keeps its time
        (Observed("99", 1.0), HELD, 3.0, Observed("100", 3.0)),  # changed: restarts
        (Observed("100", 1.0), None, 3.0, Observed(None, 3.0)),  # deleted
    ],
)
def test_observe(previous: Observed | None, record: LeaseRecord | None, now: float,
                 expected: Observed) -> None:
    assert observe(previous, record, now) == expected


LATER = WALL + timedelta(seconds=30)


@pytest.mark.parametrize(
    ("record", "verdict", "expected"),
    [
        (None, Verdict.CREATE, LeaseRecord("me", 10, LATER, LATER, 0, None)),
        (MINE, Verdict.RENEW, LeaseRecord("me", 10, WALL, LATER, 3, "100")),
        (HELD, Verdict.ACQUIRE, LeaseRecord("me", 10, LATER, LATER, 4, "100")),  # transition
        (FREE, Verdict.ACQUIRE, LeaseRecord("me", 10, LATER, LATER, 3, "100")),  # released
    ],
)
def test_desired(record: LeaseRecord | None, verdict: Verdict, expected: LeaseRecord) -> None:
    assert desired(record, "me", verdict, LATER, T) == expected


def test_nothing_to_write_while_waiting() -> None:
    with pytest.raises(ValueError, match="nothing to write"):
        desired(HELD, "me", Verdict.WAIT, LATER, T)


def test_released_frees_the_lease_and_keeps_its_version() -> None:
    out = released(MINE, LATER)
    assert (out.holder, out.duration_seconds, out.renew_time) == (None, 1, LATER)
    assert (out.transitions, out.resource_version) == (3, "100")
    assert decide(out, "other", Observed("100", 0.0), 0.0, T) is Verdict.ACQUIRE


@pytest.mark.parametrize(
    ("last", "now", "leading"),
    [(0.0, 0.0, True), (0.0, 6.99, True), (0.0, 7.0, False), (10.0, 16.0, True)],
)
def test_still_leading(last: float, now: float, leading: bool) -> None:
    assert still_leading(last, now, T) is leading


@pytest.mark.parametrize(
    ("timing", "problem"),
    [
        (Timing(10, 7, 2), None),
        (Timing(15, 10, 2), None),
        (Timing(7, 7, 2), "lease duration must be longer"),
        (Timing(10, 2.4, 2), "more than 1.2 times"),
        (Timing(10, 7, 0), "must be positive"),
    ],
)
def test_timing_problem(timing: Timing, problem: str | None) -> None:
    found = timing.problem()
    assert found == problem if problem is None else problem in (found or "")


def test_the_leader_stops_before_anyone_can_take_over() -> None:
    """Safety: a standby that saw the last renewal (at 0) takes over at lease_duration at the
    earliest; the leader has stopped by then, with a retry period to spare."""
    assert not still_leading(0.0, T.lease_duration, T)
    assert not still_leading(0.0, T.lease_duration - T.retry_period, T)
