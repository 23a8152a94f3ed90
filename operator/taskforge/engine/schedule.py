"""The cron trigger: Kubernetes CronJob's decisions, as a pure function of the facts.

    plan_schedule(
        workflow: str,                       # the Workflow's name
        schedule: Schedule,                  # spec.triggers.schedule
        *,
        created: datetime,                   # the Workflow's creationTimestamp
        last_schedule_time: datetime | None, # status.lastScheduleTime
        runs: Sequence[ActiveRun],           # the runs this schedule created (name, time, phase)
        now: datetime,
    ) -> SchedulePlan

The plan says which run to create (`start`, at most one), which runs to delete first
(`delete_active`, concurrencyPolicy Replace), what to write to status (`last_schedule_time`,
`next_schedule_time`, the `Scheduled` condition), which Events to post, and when to plan again
(`requeue_after`, seconds: the next scheduled time plus CronJob's 100 ms, so the run is created
within a second of its time). Times in the plan are UTC; naive inputs are read as UTC.

It ports the CronJob controller v2 of Kubernetes v1.36 (`syncCronJob`, `mostRecentScheduleTime`,
`nextScheduleTimeDuration` in pkg/controller/cronjob), including its less obvious rules:

* Only the most recent missed time is started, never a backlog; the missed count is CronJob's
  estimate (gap between the first two times). More than 100 missed times starts NOTHING and
  says so (condition Scheduled=False, reason TooManyMissedTimes, and a Warning Event): the
  original controller's rule, which issue 6 asks for; controller v2 would start the newest.
* `startingDeadlineSeconds` moves the window start to `now - deadline`, so a time older than
  that is simply not a candidate. CronJob's own "too late" branch is unreachable for that reason
  and it says nothing; we add a MissSchedule Warning so the skip is visible.
* Forbid with a run active starts nothing and does not advance lastScheduleTime: the missed
  time stays pending and starts late when the active run ends (if still within the deadline and
  no newer time came round). Re-plan when a run of this schedule finishes.
* Replace deletes every active run, then starts the new one.
* Run names are `{workflow}-{unix minutes}` (CronJob's job names): creating one twice is a 409,
  so a restart between "create" and "patch status" cannot start a time twice. A 409 means
  "started": write `last_schedule_time` anyway. Two times in one minute (`@every 30s`) share a
  name, so, as with CronJob, at most one run a minute starts.
* Cron syntax and DST behaviour are robfig/cron's (see `cron.py`): a time in a spring-forward
  gap is skipped, a time in a fall-back overlap runs at both instants.

`runs` should be the runs labelled `taskforge.io/trigger=schedule` for this workflow (CronJob
looks only at its own Jobs); finished ones may be included, they only help recognise an
already-started time. Planning the same facts twice gives the same plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from enum import IntEnum
from typing import Any, Literal

from taskforge.api.run import TERMINAL_RUN_PHASES, TriggerInfo
from taskforge.api.workflow import Schedule
from taskforge.engine.cron import CronError, CronSpec, load_zone, parse_cron
from taskforge.engine.triggers import bounded_name, run_manifest

FIELD = "spec.triggers.schedule"
CONDITION_TYPE = "Scheduled"
NEXT_SCHEDULE_DELTA = 0.1
"""Seconds added to each wake-up, as CronJob does, so a slightly early timer is rare."""
TOO_MANY_MISSED = 100


@dataclass(frozen=True)
class ActiveRun:
    """A run the schedule created, as the operator observes it."""

    name: str
    scheduled_time: datetime | None = None
    phase: str = "Running"


@dataclass(frozen=True)
class ScheduledStart:
    """Create this run (409 means it exists: treat it as started)."""

    run_name: str
    scheduled_time: datetime


@dataclass(frozen=True)
class ScheduleError:
    """The schedule cannot be evaluated; `field` is the path users must fix."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class ScheduleCondition:
    """The `Scheduled` condition; the handler stamps transition time and generation."""

    status: Literal["True", "False"]
    reason: str
    message: str
    type: str = CONDITION_TYPE


@dataclass(frozen=True)
class ScheduleEvent:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class SchedulePlan:
    start: ScheduledStart | None
    delete_active: tuple[str, ...]
    last_schedule_time: datetime | None
    next_schedule_time: datetime | None
    requeue_after: float | None
    condition: ScheduleCondition
    events: tuple[ScheduleEvent, ...] = field(default=())
    error: ScheduleError | None = None


class _Missed(IntEnum):
    NONE = 0
    FEW = 1
    MANY = 2


class _NeverError(Exception):
    """No two schedule times within five years: CronJob's "less than 1 second" error."""


def compile_schedule(schedule: Schedule) -> CronSpec | ScheduleError:
    """The parsed schedule, or the error naming the field (for validation and the plan)."""
    try:
        zone = load_zone(schedule.timezone)
    except CronError as exc:
        return ScheduleError(f"{FIELD}.timezone", str(exc))
    try:
        return parse_cron(schedule.cron, zone)
    except CronError as exc:
        return ScheduleError(f"{FIELD}.cron", f"{schedule.cron!r}: {exc}")


def scheduled_run_name(workflow: str, scheduled_time: datetime) -> str:
    """`{workflow}-{unix minutes}`, CronJob's job name, cut to fit a 63-character label."""
    return bounded_name(workflow, f"-{int(_utc(scheduled_time).timestamp()) // 60}")


def scheduled_run_manifest(
    namespace: str, workflow: str, start: ScheduledStart, schedule: Schedule
) -> dict[str, Any]:
    """The WorkflowRun for a planned start: trigger {type: schedule, scheduledTime}."""
    trigger = TriggerInfo(type="schedule", scheduled_time=start.scheduled_time)
    return run_manifest(namespace, workflow, start.run_name, trigger, schedule.params)


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _most_recent(
    spec: CronSpec, earliest: datetime, now: datetime
) -> tuple[datetime | None, _Missed]:
    """`mostRecentScheduleTime`: the latest time in (earliest, now] by CronJob's estimate."""
    t1 = spec.next(earliest)
    if t1 is not None and now < t1:
        return None, _Missed.NONE
    t2 = spec.next(t1) if t1 is not None else None
    if t1 is None or t2 is None:
        raise _NeverError
    if now < t2:
        return t1, _Missed.NONE
    between = round((t2 - t1).total_seconds())  # >= 1: times are whole, increasing seconds
    missed = int((now - t1).total_seconds()) // between + 1
    # Back off one interval and walk forward: exact for regular schedules and @every, and
    # (as in CronJob) blind to a time that precedes a long gap in an irregular one.
    t: datetime | None = spec.next(t1 + timedelta(seconds=(missed - 2) * between))
    most_recent = None
    while t is not None and t <= now:
        most_recent, t = t, spec.next(t)
    return most_recent, _Missed.MANY if missed > TOO_MANY_MISSED else _Missed.FEW


def _next_time(spec: CronSpec, earliest: datetime, now: datetime) -> datetime | None:
    """`nextScheduleTimeDuration` as a time: the next activation still to come."""
    try:
        most_recent, missed = _most_recent(spec, earliest, now)
    except _NeverError:
        most_recent, missed = now, _Missed.NONE
    if most_recent is None:
        most_recent = earliest if missed == _Missed.NONE else now
    return spec.next(most_recent)


def _stamp(t: datetime) -> str:
    return format_datetime(t)  # RFC 1123 with a numeric zone, as CronJob's events


def plan_schedule(
    workflow: str,
    schedule: Schedule,
    *,
    created: datetime,
    last_schedule_time: datetime | None,
    runs: Sequence[ActiveRun],
    now: datetime,
) -> SchedulePlan:
    """CronJob's `syncCronJob` for one workflow; see the module docstring."""
    now, created = _utc(now), _utc(created)
    last = _utc(last_schedule_time) if last_schedule_time is not None else None
    spec = compile_schedule(schedule)
    if isinstance(spec, ScheduleError):
        reason = "UnknownTimeZone" if spec.field.endswith("timezone") else "InvalidSchedule"
        return _idle(last, reason, spec)
    if schedule.suspend:
        return _idle(last, "Suspended", None)

    earliest = last or created
    window_start = earliest
    if schedule.starting_deadline_seconds is not None:
        window_start = max(earliest, now - timedelta(seconds=schedule.starting_deadline_seconds))
    try:
        scheduled, missed = _most_recent(spec, window_start, now)
    except _NeverError:
        error = ScheduleError(f"{FIELD}.cron", f"{schedule.cron!r} has no time within five"
                              " years of the last one (a date such as 31 February?)")
        return _idle(last, "InvalidSchedule", error)

    if scheduled is None:
        return _without_start(spec, earliest, window_start, last, now)

    events: list[ScheduleEvent] = []
    reason, message = "Scheduled", ""
    if missed == _Missed.MANY:
        return _too_many_missed(spec, last, now)

    name = scheduled_run_name(workflow, scheduled)
    if last == scheduled or any(r.name == name for r in runs):
        # Already started (perhaps the status patch after the create was lost): record it.
        return _planned(spec, now, scheduled, last=scheduled, note=(reason, message), events=events)
    active = sorted(r.name for r in runs if r.phase not in TERMINAL_RUN_PHASES)
    if schedule.concurrency_policy == "Forbid" and active:
        message = (f"not starting the run for {_stamp(scheduled)} because {active[0]} is still"
                   " running and concurrencyPolicy is Forbid")
        events.append(ScheduleEvent("Normal", "RunAlreadyActive", message))
        return _planned(spec, now, earliest, last=last, note=("RunAlreadyActive", message),
                        events=events)
    delete = tuple(active) if schedule.concurrency_policy == "Replace" else ()
    start = ScheduledStart(name, scheduled)
    return _planned(spec, now, scheduled, last=scheduled, note=(reason, message), events=events,
                    start=start, delete=delete)


def _too_many_missed(spec: CronSpec, last: datetime | None, now: datetime) -> SchedulePlan:
    """More than 100 missed times: start nothing and say so (Taskforge's rule, issue 6).

    This is the original CronJob controller's behaviour; controller v2 warns and starts the
    newest time instead. A flood of catch-up after a long outage is rarely what a platform
    team wants, so the schedule waits until someone sets or lowers startingDeadlineSeconds
    (which bounds the window and so the count) or moves lastScheduleTime on. It wakes up at
    the next scheduled time to report again, never in a tight loop.
    """
    message = (f"more than 100 missed start times: not starting any. Set or decrease"
               f" {FIELD}.startingDeadlineSeconds or check clock skew")
    upcoming = _next_time(spec, now, now)
    requeue = None
    if upcoming is not None:
        requeue = max(0.0, (upcoming - now).total_seconds()) + NEXT_SCHEDULE_DELTA
    return SchedulePlan(
        start=None,
        delete_active=(),
        last_schedule_time=last,
        next_schedule_time=upcoming,
        requeue_after=requeue,
        condition=ScheduleCondition("False", "TooManyMissedTimes", message),
        events=(ScheduleEvent("Warning", "TooManyMissedTimes", message),),
    )


def _without_start(
    spec: CronSpec, earliest: datetime, window_start: datetime, last: datetime | None,
    now: datetime,
) -> SchedulePlan:
    """No time in the window. If one was missed before the window (the deadline passed), say
    so: CronJob skips it silently, which leaves users guessing."""
    events: list[ScheduleEvent] = []
    reason, message = "Scheduled", ""
    if window_start > earliest:
        try:
            missed_time, _ = _most_recent(spec, earliest, now)
        except _NeverError:
            missed_time = None
        if missed_time is not None:
            reason = "MissSchedule"
            message = (f"missed scheduled time to start a run: {_stamp(missed_time)}"
                       f" (more than {FIELD}.startingDeadlineSeconds ago)")
            events.append(ScheduleEvent("Warning", reason, message))
    return _planned(spec, now, earliest, last=last, note=(reason, message), events=events)


def _planned(
    spec: CronSpec,
    now: datetime,
    base: datetime,
    *,
    last: datetime | None,
    note: tuple[str, str],
    events: Sequence[ScheduleEvent],
    start: ScheduledStart | None = None,
    delete: tuple[str, ...] = (),
) -> SchedulePlan:
    """Fill in the next time from the status as it will be written: `base` is the new
    lastScheduleTime, or the creation time when there is none (CronJob's requeue rule)."""
    reason, message = note
    upcoming = _next_time(spec, base, now)
    requeue = None
    if upcoming is not None:
        requeue = max(0.0, (upcoming - now).total_seconds()) + NEXT_SCHEDULE_DELTA
        when = f"next run at {upcoming.isoformat().replace('+00:00', 'Z')}"
        message = f"{message}; {when}" if message else when
    elif not message:
        message = "no further scheduled time"
    return SchedulePlan(
        start=start,
        delete_active=delete,
        last_schedule_time=last,
        next_schedule_time=upcoming,
        requeue_after=requeue,
        condition=ScheduleCondition("True", reason, message),
        events=tuple(events),
    )


def _idle(last: datetime | None, reason: str, error: ScheduleError | None) -> SchedulePlan:
    """Nothing to start and no time to wake up for: a suspended or unusable schedule waits for
    an edit of the Workflow, which brings a plan by itself."""
    if error is None:
        condition = ScheduleCondition("False", reason, "the schedule is suspended")
        events: tuple[ScheduleEvent, ...] = ()
    else:
        condition = ScheduleCondition("False", reason, str(error))
        events = (ScheduleEvent("Warning", reason, str(error)),)
    return SchedulePlan(
        start=None,
        delete_active=(),
        last_schedule_time=last,
        next_schedule_time=None,
        requeue_after=None,
        condition=condition,
        events=events,
        error=error,
    )
