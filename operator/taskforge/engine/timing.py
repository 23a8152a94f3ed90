"""When a run may start (spec.startAt, spec.startAfter) and in what order waiters go
(spec.priority): pure functions of the spec, the creation time and `now`.

The start time is derived from the spec and `metadata.creationTimestamp` alone, never
remembered: a restarted operator computes the same instant and requeues the run for it, so
the wait is exact (no polling) and survives restarts.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from taskforge.api.durations import parse_duration, parse_timestamp
from taskforge.api.timing import MAX_START_AFTER_SECONDS, PRIORITY_MAX, PRIORITY_MIN

SCHEDULED = "Scheduled"
"""The Succeeded=Unknown reason of a run waiting for its start time."""


def start_time(
    start_at: datetime | None, start_after: str | None, created_at: datetime
) -> datetime | None:
    """The instant a delayed run may start; None for a run that starts at once.

    A time without offset is UTC. A delay the CRD would refuse (malformed, over 366 days)
    counts as the longest allowed one: hostile input delays only its own run.
    """
    if start_at is not None:
        return start_at if start_at.tzinfo is not None else start_at.replace(tzinfo=UTC)
    if start_after is None:
        return None
    try:
        seconds = min(parse_duration(start_after), MAX_START_AFTER_SECONDS)
    except ValueError:
        seconds = MAX_START_AFTER_SECONDS
    return created_at + timedelta(seconds=seconds)


def not_before(
    start_at: datetime | None, start_after: str | None, created_at: datetime, now: datetime
) -> datetime | None:
    """The start time while it is still ahead of `now`; None once the run may start."""
    due = start_time(start_at, start_after, created_at)
    return due if due is not None and now < due else None


def _raw_start(spec: Mapping[str, Any]) -> tuple[datetime | None, str | None]:
    try:
        at = parse_timestamp(spec.get("startAt"))
    except (TypeError, ValueError):
        at = None
    after = spec.get("startAfter")
    return at, after if isinstance(after, str) else None


def raw_not_before(spec: Mapping[str, Any], created_at: datetime, now: datetime) -> datetime | None:
    """`not_before` of a run's spec as the cache holds it (a dict); an unreadable startAt
    (which the CRD refuses) counts as no delay."""
    return not_before(*_raw_start(spec), created_at, now)


def queued_since(
    start_at: datetime | None, start_after: str | None, created_at: datetime
) -> datetime:
    """Where a run stands in a limit's line among equal priorities: its creation, or for a
    delayed run the time it became due. A run created at 9:00 to start at 10:00 queues
    behind the runs created at 9:30 that have waited since, not ahead of them."""
    due = start_time(start_at, start_after, created_at)
    return max(created_at, due) if due is not None else created_at


def raw_queued_since(spec: Mapping[str, Any], created_at: datetime) -> datetime:
    """`queued_since` of a run's spec as the cache holds it."""
    return queued_since(*_raw_start(spec), created_at)


def effective_priority(
    run: object, workflow: object, cap: int = PRIORITY_MAX
) -> int:
    """The run's own priority, else its workflow's, else 0; within the CRD's range and at
    most `cap` (the chart's maxPriority), so no field a user sets goes past the operator's
    ceiling. Anything but an integer (a cache entry the CRD would refuse) counts as 0."""
    for value in (run, workflow):
        if isinstance(value, int) and not isinstance(value, bool):
            return max(PRIORITY_MIN, min(value, cap, PRIORITY_MAX))
    return 0
