"""Table tests of the cron trigger: CronJob's rules, fed with injected times, no mocks.

Expected times in the DST rows were taken from the Go original (robfig/cron v3 under the
CronJob controller v2 of Kubernetes v1.36), not worked out by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from taskforge.api.workflow import Schedule
from taskforge.engine.schedule import (
    ActiveRun,
    SchedulePlan,
    compile_schedule,
    plan_schedule,
    scheduled_run_manifest,
    scheduled_run_name,
)

WF = "nightly"


def t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def run(at: str, phase: str = "Running") -> ActiveRun:
    return ActiveRun(scheduled_run_name(WF, t(at)), t(at), phase)


@dataclass(frozen=True)
class Case:
    cron: str
    now: str
    last: str | None
    start: str | None
    next: str | None
    created: str = "2024-01-01T00:00:00Z"
    timezone: str | None = None
    policy: str = "Allow"
    deadline: int | None = None
    suspend: bool = False
    runs: tuple[ActiveRun, ...] = ()
    delete: tuple[str, ...] = ()
    reason: str = "Scheduled"
    events: tuple[str, ...] = ()
    new_last: str | None = None  # default: start, else last


def plan(c: Case) -> SchedulePlan:
    schedule = Schedule(
        cron=c.cron,
        timezone=c.timezone,
        concurrency_policy=c.policy,
        starting_deadline_seconds=c.deadline,
        suspend=c.suspend,
    )
    return plan_schedule(
        WF, schedule, created=t(c.created), last_schedule_time=t(c.last) if c.last else None,
        runs=c.runs, now=t(c.now),
    )


CASES = {
    "every minute, on time": Case("* * * * *", "2024-05-01T10:01:00.300Z", "2024-05-01T10:00:00Z",
                                  "2024-05-01T10:01:00Z", "2024-05-01T10:02:00Z"),
    "every minute, a second early": Case("* * * * *", "2024-05-01T10:00:59Z",
                                         "2024-05-01T10:00:00Z", None, "2024-05-01T10:01:00Z"),
    "every five minutes, late": Case("*/5 * * * *", "2024-05-01T10:07:00Z",
                                     "2024-05-01T10:00:00Z", "2024-05-01T10:05:00Z",
                                     "2024-05-01T10:10:00Z"),
    "hourly, three missed: only the most recent starts": Case(
        "0 * * * *", "2024-05-01T10:20:00Z", "2024-05-01T07:00:00Z", "2024-05-01T10:00:00Z",
        "2024-05-01T11:00:00Z"),
    "restart right after the time": Case("0 * * * *", "2024-05-01T10:00:00.500Z",
                                         "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z",
                                         "2024-05-01T11:00:00Z"),
    "restart after the create, before the status patch": Case(
        "0 * * * *", "2024-05-01T10:00:01Z", "2024-05-01T09:00:00Z", None,
        "2024-05-01T11:00:00Z", runs=(run("2024-05-01T10:00:00Z"),),
        new_last="2024-05-01T10:00:00Z"),
    "already started and finished, status patch lost": Case(
        "0 * * * *", "2024-05-01T10:30:00Z", "2024-05-01T09:00:00Z", None,
        "2024-05-01T11:00:00Z", runs=(run("2024-05-01T10:00:00Z", "Succeeded"),),
        new_last="2024-05-01T10:00:00Z"),
    "no lastScheduleTime: counted from creation": Case(
        "* * * * *", "2024-05-01T10:00:00.500Z", None, "2024-05-01T10:00:00Z",
        "2024-05-01T10:01:00Z", created="2024-05-01T09:59:30Z"),
    "created after the time: nothing yet": Case(
        "* * * * *", "2024-05-01T10:00:40Z", None, None, "2024-05-01T10:01:00Z",
        created="2024-05-01T10:00:30Z"),
    "more than 100 missed, no deadline: start nothing, say so": Case(
        "* * * * *", "2024-05-01T13:00:30Z", "2024-05-01T10:00:00Z", None,
        "2024-05-01T13:01:00Z", reason="TooManyMissedTimes", events=("TooManyMissedTimes",)),
    "more than 100 missed, long deadline: start nothing": Case(
        "* * * * *", "2024-05-01T13:00:30Z", "2024-05-01T10:00:00Z", None,
        "2024-05-01T13:01:00Z", deadline=86400, reason="TooManyMissedTimes",
        events=("TooManyMissedTimes",)),
    "more than 100 missed, short deadline: no warning": Case(
        "* * * * *", "2024-05-01T13:00:30Z", "2024-05-01T10:00:00Z", "2024-05-01T13:00:00Z",
        "2024-05-01T13:01:00Z", deadline=200),
    "deadline passed: skipped, reported, lastScheduleTime kept": Case(
        "0 * * * *", "2024-05-01T10:05:00Z", "2024-05-01T08:00:00Z", None,
        "2024-05-01T11:00:00Z", deadline=60, reason="MissSchedule", events=("MissSchedule",)),
    "within the deadline": Case("0 * * * *", "2024-05-01T10:00:30Z", "2024-05-01T09:00:00Z",
                                "2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z", deadline=60),
    "deadline zero never starts": Case(
        "0 * * * *", "2024-05-01T10:00:00Z", "2024-05-01T09:00:00Z", None,
        "2024-05-01T11:00:00Z", deadline=0, reason="MissSchedule", events=("MissSchedule",)),
    "Forbid, a run active: wait, lastScheduleTime kept": Case(
        "*/5 * * * *", "2024-05-01T10:05:00.200Z", "2024-05-01T10:00:00Z", None,
        "2024-05-01T10:10:00Z", policy="Forbid", runs=(run("2024-05-01T10:00:00Z"),),
        reason="RunAlreadyActive", events=("RunAlreadyActive",)),
    "Forbid, the active run ended before the next time: start late": Case(
        "*/5 * * * *", "2024-05-01T10:07:00Z", "2024-05-01T10:00:00Z", "2024-05-01T10:05:00Z",
        "2024-05-01T10:10:00Z", policy="Forbid",
        runs=(run("2024-05-01T10:00:00Z", "Succeeded"),)),
    "Forbid, nothing active": Case("*/5 * * * *", "2024-05-01T10:05:01Z", "2024-05-01T10:00:00Z",
                                   "2024-05-01T10:05:00Z", "2024-05-01T10:10:00Z",
                                   policy="Forbid"),
    "Replace, a run active: delete it, then start": Case(
        "*/5 * * * *", "2024-05-01T10:05:01Z", "2024-05-01T10:00:00Z", "2024-05-01T10:05:00Z",
        "2024-05-01T10:10:00Z", policy="Replace",
        runs=(run("2024-05-01T10:00:00Z"), run("2024-05-01T09:55:00Z", "Failed")),
        delete=(scheduled_run_name(WF, t("2024-05-01T10:00:00Z")),)),
    "Allow, a run active: start another": Case(
        "*/5 * * * *", "2024-05-01T10:05:01Z", "2024-05-01T10:00:00Z", "2024-05-01T10:05:00Z",
        "2024-05-01T10:10:00Z", runs=(run("2024-05-01T10:00:00Z"),)),
    "suspended": Case("* * * * *", "2024-05-01T10:05:00Z", "2024-05-01T10:00:00Z", None, None,
                      suspend=True, reason="Suspended"),
    "Berlin 09:00 in winter is 08:00Z": Case(
        "0 9 * * *", "2024-01-15T08:00:00.400Z", "2024-01-14T08:00:00Z", "2024-01-15T08:00:00Z",
        "2024-01-16T08:00:00Z", timezone="Europe/Berlin"),
    "Berlin spring-forward gap: 02:30 does not exist, the day is skipped": Case(
        "30 2 * * *", "2024-03-31T01:30:30Z", "2024-03-30T01:30:00Z", None,
        "2024-04-01T00:30:00Z", timezone="Europe/Berlin"),
    "Berlin fall-back overlap: first 02:30 (CEST)": Case(
        "30 2 * * *", "2024-10-27T00:30:01Z", "2024-10-26T00:30:00Z", "2024-10-27T00:30:00Z",
        "2024-10-27T01:30:00Z", timezone="Europe/Berlin"),
    "Berlin fall-back overlap: second 02:30 (CET) runs too": Case(
        "30 2 * * *", "2024-10-27T01:30:01Z", "2024-10-27T00:30:00Z", "2024-10-27T01:30:00Z",
        "2024-10-28T01:30:00Z", timezone="Europe/Berlin"),
    "New York spring-forward gap skipped": Case(
        "30 2 * * *", "2024-03-10T07:30:30Z", "2024-03-09T07:30:00Z", None,
        "2024-03-11T06:30:00Z", timezone="America/New_York"),
    "New York fall-back overlap: 01:30 EDT then 01:30 EST": Case(
        "30 1 * * *", "2024-11-03T05:30:02Z", "2024-11-02T05:30:00Z", "2024-11-03T05:30:00Z",
        "2024-11-03T06:30:00Z", timezone="America/New_York"),
    "New York hourly across the fall-back hour": Case(
        "0 * * * *", "2024-11-03T06:00:01Z", "2024-11-03T05:00:00Z", "2024-11-03T06:00:00Z",
        "2024-11-03T07:00:00Z", timezone="America/New_York"),
    "@hourly": Case("@hourly", "2024-05-01T10:00:00.050Z", "2024-05-01T09:00:00Z",
                    "2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z"),
    "@daily is local midnight": Case("@daily", "2024-01-15T23:00:10Z", "2024-01-14T23:00:00Z",
                                     "2024-01-15T23:00:00Z", "2024-01-16T23:00:00Z",
                                     timezone="Europe/Berlin"),
    "@every 90m from creation": Case("@every 90m", "2024-05-01T01:30:05Z", None,
                                     "2024-05-01T01:30:00Z", "2024-05-01T03:00:00Z",
                                     created="2024-05-01T00:00:00Z"),
    "day of month OR day of week (13th or Friday)": Case(
        "0 0 13 * 5", "2024-09-06T00:00:01Z", "2024-08-30T00:00:00Z", "2024-09-06T00:00:00Z",
        "2024-09-13T00:00:00Z"),
    "irregular schedule over a weekend: CronJob's estimate misses Friday's time": Case(
        "30 6-16/4 * * 1-5", "2024-05-06T06:00:00Z", "2024-05-03T06:30:00Z", None,
        "2024-05-06T06:30:00Z"),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_plan(case: Case) -> None:
    p = plan(case)
    assert p.error is None
    assert (p.start.scheduled_time if p.start else None) == (t(case.start) if case.start else None)
    if p.start is not None:
        assert p.start.run_name == scheduled_run_name(WF, p.start.scheduled_time)
    assert p.next_schedule_time == (t(case.next) if case.next else None)
    expected_last = case.new_last or case.start or case.last
    assert p.last_schedule_time == (t(expected_last) if expected_last else None)
    assert p.delete_active == case.delete
    assert p.condition.reason == case.reason
    stuck = case.suspend or case.reason == "TooManyMissedTimes"
    assert p.condition.status == ("False" if stuck else "True")
    assert tuple(e.reason for e in p.events) == case.events
    if p.next_schedule_time is None:
        assert p.requeue_after is None
    else:  # wake exactly at the next time (plus CronJob's 100 ms), so a run is ≤ 1 s late
        wait = (p.next_schedule_time - t(case.now)).total_seconds()
        assert p.requeue_after == pytest.approx(wait + 0.1)


INVALID = {
    "minute out of range": ("61 * * * *", None, "spec.triggers.schedule.cron",
                            "InvalidSchedule", "end of range (61) above maximum (59)"),
    "four fields": ("* * * *", None, "spec.triggers.schedule.cron", "InvalidSchedule",
                    "expected exactly 5 fields, found 4"),
    "seven for Sunday (robfig rejects it)": ("0 0 * * 7", None, "spec.triggers.schedule.cron",
                                             "InvalidSchedule", "above maximum (6)"),
    "unknown descriptor": ("@fortnightly", None, "spec.triggers.schedule.cron",
                           "InvalidSchedule", "unrecognized descriptor"),
    "TZ in the expression": ("TZ=UTC * * * * *", None, "spec.triggers.schedule.cron",
                             "InvalidSchedule", "use timeZone field instead"),
    "31 February never comes": ("0 0 31 2 *", None, "spec.triggers.schedule.cron",
                                "InvalidSchedule", "no time within five years"),
    "unknown zone": ("* * * * *", "Mars/Olympus_Mons", "spec.triggers.schedule.timezone",
                     "UnknownTimeZone", "unknown time zone Mars/Olympus_Mons"),
    "Local is not a zone": ("* * * * *", "Local", "spec.triggers.schedule.timezone",
                            "UnknownTimeZone", "explicit time zone"),
}


@pytest.mark.parametrize("cron,tz,field_path,reason,text", list(INVALID.values()),
                         ids=list(INVALID))
def test_invalid(cron: str, tz: str | None, field_path: str, reason: str, text: str) -> None:
    p = plan_schedule(WF, Schedule(cron=cron, timezone=tz), created=t("2024-01-01T00:00:00Z"),
                      last_schedule_time=None, runs=(), now=t("2024-05-01T00:00:00Z"))
    assert p.error is not None
    assert p.error.field == field_path
    assert text in p.error.message
    assert str(p.error).startswith(field_path + ": ")
    assert (p.start, p.requeue_after, p.condition.status) == (None, None, "False")
    assert p.condition.reason == reason
    assert [(e.type, e.reason) for e in p.events] == [("Warning", reason)]


def test_restart_starts_each_time_once() -> None:
    """Apply a plan (create the run, maybe lose the status patch), plan again: nothing new."""
    case = CASES["restart right after the time"]
    first = plan(case)
    assert first.start is not None
    created = ActiveRun(first.start.run_name, first.start.scheduled_time)
    for last in (case.last, "2024-05-01T10:00:00Z"):  # status patch lost / written
        again = plan_schedule(WF, Schedule(cron=case.cron), created=t(case.created),
                              last_schedule_time=t(last) if last else None, runs=(created,),
                              now=t(case.now) + timedelta(seconds=0.4))
        assert again.start is None
        assert again.last_schedule_time == first.start.scheduled_time


def test_run_names() -> None:
    assert scheduled_run_name("nightly", t("2024-01-01T00:00:00Z")) == "nightly-28401120"
    long_a, long_b = "a" * 60 + "-x", "a" * 60 + "-y"
    name_a = scheduled_run_name(long_a, t("2024-01-01T00:00:00Z"))
    name_b = scheduled_run_name(long_b, t("2024-01-01T00:00:00Z"))
    assert len(name_a) == 63 and name_a.endswith("-28401120") and name_a != name_b


def test_manifest() -> None:
    start = plan(CASES["every minute, on time"]).start
    assert start is not None
    m = scheduled_run_manifest("team", WF, start, Schedule(cron="* * * * *", params={"x": 1}))
    assert m["metadata"] == {
        "name": start.run_name, "namespace": "team",
        "labels": {"taskforge.io/workflow": WF, "taskforge.io/trigger": "schedule"},
    }
    assert m["spec"] == {"workflowRef": {"name": WF}, "params": {"x": 1}, "cancel": False,
                         "trigger": {"type": "schedule", "scheduledTime": "2024-05-01T10:01:00Z"}}


def test_compile_schedule_for_validation() -> None:
    assert not isinstance(compile_schedule(Schedule(cron="0 9 * * MON-FRI")), type(None))
    error = compile_schedule(Schedule(cron="0 9 * * MON-FRI", timezone="Nowhere/Town"))
    assert str(error) == "spec.triggers.schedule.timezone: unknown time zone Nowhere/Town"


# --- properties -------------------------------------------------------------------------------

FIELDS = (
    ["*", "*/5", "0", "15,45", "0-30/10", "59"],
    ["*", "2", "*/3", "9-17", "1,2,3"],
    ["*", "1", "15", "*/10", "31"],
    ["*", "1-6", "*/2", "feb"],
    ["*", "1-5", "0", "sat", "mon,fri"],
)
crons = st.one_of(
    st.tuples(*(st.sampled_from(f) for f in FIELDS)).map(" ".join),
    st.sampled_from(["@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@every 37m"]),
)
zones = st.sampled_from([None, "Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
                         "Asia/Kolkata", "America/Sao_Paulo"])
instants = st.datetimes(min_value=datetime(2023, 1, 1), max_value=datetime(2026, 1, 1),
                        timezones=st.just(UTC))


@settings(max_examples=300, deadline=None)
@given(
    cron=crons, tz=zones, created=instants,
    last_after=st.one_of(st.none(), st.timedeltas(timedelta(0), timedelta(days=60))),
    now_after=st.timedeltas(timedelta(0), timedelta(days=90)),
    deadline=st.one_of(st.none(), st.integers(0, 86400 * 3)),
    policy=st.sampled_from(["Allow", "Forbid", "Replace"]),
    active=st.booleans(),
)
def test_properties(
    *,
    cron: str, tz: str | None, created: datetime, last_after: timedelta | None,
    now_after: timedelta, deadline: int | None, policy: str, active: bool,
) -> None:
    last = created + last_after if last_after is not None else None
    now = (last or created) + now_after
    schedule = Schedule(cron=cron, timezone=tz, concurrency_policy=policy,
                        starting_deadline_seconds=deadline)
    runs = (ActiveRun("someone-else-1", None, "Running"),) if active else ()
    p = plan_schedule(WF, schedule, created=created, last_schedule_time=last, runs=runs, now=now)
    assert p == plan_schedule(WF, schedule, created=created, last_schedule_time=last, runs=runs,
                              now=now)
    if p.error is not None:
        return
    if p.start is not None:
        assert p.start.scheduled_time <= now
        assert p.start.scheduled_time > (last or created)
        if deadline is not None:
            assert p.start.scheduled_time >= now - timedelta(seconds=deadline)
        assert p.last_schedule_time == p.start.scheduled_time
        assert not (policy == "Forbid" and active)
        # Applying the plan and planning again at the same moment starts nothing new.
        done = (*runs, ActiveRun(p.start.run_name, p.start.scheduled_time))
        again = plan_schedule(WF, schedule, created=created, last_schedule_time=last, runs=done,
                              now=now)
        assert again.start is None
    else:
        assert p.last_schedule_time == last
    assert p.delete_active == (("someone-else-1",) if p.start and policy == "Replace" and active
                               else ())
    if p.next_schedule_time is not None:
        assert p.next_schedule_time > now
        assert p.requeue_after is not None and p.requeue_after > 0
