"""Cron expressions exactly as a Kubernetes CronJob reads them (robfig/cron v3 `ParseStandard`).

Why not croniter: the CronJob controller parses with robfig/cron v3 and walks time with its
`SpecSchedule.Next`, and the two disagree where users notice. In a spring-forward gap
(Europe/Berlin, 2024-03-31, `30 2 * * *`) robfig skips the day while croniter fires at 03:00,
and robfig (so the CronJob API) rejects `7` for Sunday, `L` and `#`, which croniter accepts.
So this module is a line-by-line port of robfig's parser and `Next` (over `zoneinfo`). It was
checked against the Go original (robfig/cron v3.0.1 plus the controller's functions, built from
the module cache) on ~30,000 random expressions, zones and instants around DST changes, with no
difference; the DST rows of tests/engine/test_schedule.py come from that oracle.
tests/engine/test_cron_vs_croniter.py is a differential test against croniter (which is
therefore only a test dependency): the two agree except in the cases it pins, with reasons.

Accepted syntax: five fields (minute hour dom month dow) with `*`, `?`, ranges, steps, lists and
JAN-DEC / SUN-SAT names, or a descriptor: `@yearly`, `@annually`, `@monthly`, `@weekly`,
`@daily`, `@midnight`, `@hourly`, `@every <duration>`.

Everything here is pure: times are tz-aware datetimes, zones are `zoneinfo.ZoneInfo`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from taskforge.api.durations import parse_go_duration_ns

_STAR = 1 << 63
_ONE = timedelta(seconds=1)
_TZ_PART = re.compile(r"^[A-Za-z.\-_0-9+]{1,14}$")
_INT = re.compile(r"^[+-]?[0-9]+$")
_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}


class CronError(ValueError):
    """A cron expression or time zone the CronJob API would reject; the text says why."""


@dataclass(frozen=True)
class _Bounds:
    low: int
    high: int
    names: dict[str, int] | None = None


_MINUTE = _Bounds(0, 59)
_HOUR = _Bounds(0, 23)
_DOM = _Bounds(1, 31)
_MONTH = _Bounds(1, 12, _MONTHS)
_DOW = _Bounds(0, 6, _DAYS)


def _all(b: _Bounds) -> int:
    return _bits(b.low, b.high, 1) | _STAR


def _bits(low: int, high: int, step: int) -> int:
    out = 0
    for i in range(low, high + 1, step):
        out |= 1 << i
    return out


@dataclass(frozen=True)
class CronSpec:
    """A parsed schedule: bit sets per field (robfig's `SpecSchedule`) or a fixed `@every` delay."""

    zone: ZoneInfo
    minute: int = 0
    hour: int = 0
    dom: int = 0
    month: int = 0
    dow: int = 0
    every: timedelta | None = None

    def next(self, after: datetime) -> datetime | None:
        """The first activation strictly after `after` (whole seconds, UTC), or None when there
        is none within five years (`0 0 31 2 *`), which is how robfig says "never"."""
        if self.every is not None:
            return (after.astimezone(UTC) + self.every).replace(microsecond=0)
        return _next_spec(self, after)


def load_zone(name: str | None) -> ZoneInfo:
    """The zone CronJob's `validateTimeZone` would accept: None means UTC; "Local" is refused
    because it would depend on the operator's host."""
    if name is None:
        return ZoneInfo("UTC")
    if not name:
        raise CronError("timeZone must be nil or non-empty string")
    for part in name.split("/"):
        if part in (".", "..") or part.startswith("-") or not _TZ_PART.match(part):
            raise CronError(f"unknown time zone {name}")
    if name.lower() == "local":
        raise CronError("timeZone must be an explicit time zone as defined in "
                        "https://www.iana.org/time-zones")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(f"unknown time zone {name}") from exc


def parse_cron(expr: str, zone: ZoneInfo) -> CronSpec:
    """Parse like `cron.ParseStandard`; raises CronError with robfig's wording."""
    if not expr:
        raise CronError("empty spec string")
    if "TZ" in expr:
        raise CronError("cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
    if expr.startswith("@"):
        return _descriptor(expr, zone)
    fields = expr.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: {fields}")
    return CronSpec(
        zone=zone,
        minute=_field(fields[0], _MINUTE),
        hour=_field(fields[1], _HOUR),
        dom=_field(fields[2], _DOM),
        month=_field(fields[3], _MONTH),
        dow=_field(fields[4], _DOW),
    )


def _descriptor(expr: str, zone: ZoneInfo) -> CronSpec:
    zero, first = 1 << 0, 1 << 1  # minute/hour/Sunday 0; day/month 1
    if expr in ("@yearly", "@annually"):
        return CronSpec(zone, zero, zero, first, first, _all(_DOW))
    if expr == "@monthly":
        return CronSpec(zone, zero, zero, first, _all(_MONTH), _all(_DOW))
    if expr == "@weekly":
        return CronSpec(zone, zero, zero, _all(_DOM), _all(_MONTH), zero)
    if expr in ("@daily", "@midnight"):
        return CronSpec(zone, zero, zero, _all(_DOM), _all(_MONTH), _all(_DOW))
    if expr == "@hourly":
        return CronSpec(zone, zero, _all(_HOUR), _all(_DOM), _all(_MONTH), _all(_DOW))
    if expr.startswith("@every "):
        nanos = _go_duration_ns(expr[len("@every "):])
        # robfig's Every: at least one second, sub-second part dropped.
        return CronSpec(zone, every=timedelta(seconds=max(1, nanos // 10**9)))
    raise CronError(f"unrecognized descriptor: {expr}")


def _go_duration_ns(text: str) -> int:
    """Go's `time.ParseDuration` (api/durations.py), with robfig's error text."""
    try:
        return parse_go_duration_ns(text)
    except ValueError:
        raise CronError(
            f"failed to parse duration @every {text}: invalid duration {text!r}") from None


def _field(text: str, b: _Bounds) -> int:
    bits = 0
    parts = [p for p in text.split(",") if p]
    if not parts:
        # robfig accepts an empty list and never matches; CronJob then reports an invalid
        # schedule on every sync. Saying so at parse time is the same verdict, earlier.
        raise CronError(f"field {text!r} lists no values")
    for part in parts:
        bits |= _range(part, b)
    return bits


def _range(expr: str, b: _Bounds) -> int:
    range_and_step = expr.split("/")
    low_high = range_and_step[0].split("-")
    extra = 0
    if low_high[0] in ("*", "?"):
        start, end, extra = b.low, b.high, _STAR
    else:
        start = _int_or_name(low_high[0], b.names)
        if len(low_high) == 1:
            end = start
        elif len(low_high) == 2:
            end = _int_or_name(low_high[1], b.names)
        else:
            raise CronError(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _int(range_and_step[1])
        if len(low_high) == 1:  # "N/step" means "N-max/step"
            end = b.high
        if step > 1:
            extra = 0
    else:
        raise CronError(f"too many slashes: {expr}")
    if start < b.low:
        raise CronError(f"beginning of range ({start}) below minimum ({b.low}): {expr}")
    if end > b.high:
        raise CronError(f"end of range ({end}) above maximum ({b.high}): {expr}")
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise CronError(f"step of range should be a positive number: {expr}")
    return _bits(start, end, step) | extra


def _int_or_name(text: str, names: dict[str, int] | None) -> int:
    if names is not None and text.lower() in names:
        return names[text.lower()]
    return _int(text)


def _int(text: str) -> int:
    if not _INT.match(text):
        raise CronError(f"failed to parse int from {text}")
    num = int(text)
    if abs(num) >= 1 << 63:  # strconv.Atoi's range
        raise CronError(f"failed to parse int from {text}: value out of range")
    if num < 0:
        raise CronError(f"negative number ({num}) not allowed: {text}")
    return num


# --- SpecSchedule.Next, with Go's time arithmetic ---------------------------------------------


def _add(t: datetime, delta: timedelta) -> datetime:
    """Go's `t.Add`: absolute time, whatever the wall clock does."""
    tz = t.tzinfo
    return (t.astimezone(UTC) + delta).astimezone(tz)


def _go_date(
    year: int, month: int, day: int, zone: ZoneInfo, clock: datetime | None = None
) -> datetime:
    """Go's `time.Date(...)` in `zone`: fields normalised, and a wall time that falls in a gap or
    an overlap resolved the way Go resolves it (offset at the wall time read as UTC, re-looked up
    once when that instant lies outside the zone period it came from)."""
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    wall = datetime(year, month, 1, tzinfo=UTC) + timedelta(days=day - 1)
    if clock is not None:  # the wall clock of `clock` is kept, as Go's AddDate keeps it
        wall = wall.replace(hour=clock.hour, minute=clock.minute, second=clock.second,
                            microsecond=clock.microsecond)
    offset = wall.astimezone(zone).utcoffset() or timedelta(0)
    other = (wall - offset).astimezone(zone).utcoffset() or timedelta(0)
    if other != offset:
        offset = other
    return (wall - offset).astimezone(zone)


def _day_matches(s: CronSpec, t: datetime) -> bool:
    dom_match = bool(1 << t.day & s.dom)
    dow_match = bool(1 << (t.isoweekday() % 7) & s.dow)
    if s.dom & _STAR or s.dow & _STAR:
        return dom_match and dow_match
    return dom_match or dow_match


def _truncate(t: datetime, unit: int) -> datetime:
    seconds = int(t.timestamp())
    return datetime.fromtimestamp(seconds - seconds % unit, UTC).astimezone(t.tzinfo)


_Step = tuple[datetime, bool, bool]  # (time, a field was incremented, wrapped: start over)


def _month_step(s: CronSpec, t: datetime, added: bool) -> _Step:
    while not 1 << t.month & s.month:
        if not added:
            added = True
            t = _go_date(t.year, t.month, 1, s.zone)
        t = _go_date(t.year, t.month + 1, t.day, s.zone, t)
        if t.month == 1:
            return t, added, True
    return t, added, False


def _day_step(s: CronSpec, t: datetime, added: bool) -> _Step:
    while not _day_matches(s, t):
        if not added:
            added = True
            t = _go_date(t.year, t.month, t.day, s.zone)
        t = _go_date(t.year, t.month, t.day + 1, s.zone, t)
        if t.hour != 0:  # midnight skipped or doubled by DST: robfig's correction
            t = _add(t, timedelta(hours=24 - t.hour if t.hour > 12 else -t.hour))
        if t.day == 1:
            return t, added, True
    return t, added, False


def _hour_step(s: CronSpec, t: datetime, added: bool) -> _Step:
    while not 1 << t.hour & s.hour:
        if not added:
            added = True
            t = _go_date(t.year, t.month, t.day, s.zone, t.replace(minute=0, second=0,
                                                                   microsecond=0))
        t = _add(t, timedelta(hours=1))  # absolute: a wall hour skipped by DST never matches
        if t.hour == 0:
            return t, added, True
    return t, added, False


def _minute_step(s: CronSpec, t: datetime, added: bool) -> _Step:
    while not 1 << t.minute & s.minute:
        if not added:
            added = True
            t = _truncate(t, 60)
        t = _add(t, timedelta(minutes=1))
        if t.minute == 0:
            return t, added, True
    return t, added, False


def _second_step(s: CronSpec, t: datetime, added: bool) -> _Step:
    while t.second != 0:  # ParseStandard's seconds field is always "0"
        if not added:
            added = True
            t = _truncate(t, 1)
        t = _add(t, _ONE)
        if t.second == 0:
            return t, added, True
    return t, added, False


_STEPS = (_month_step, _day_step, _hour_step, _minute_step, _second_step)


def _next_spec(s: CronSpec, after: datetime) -> datetime | None:
    """robfig/cron v3 `SpecSchedule.Next`, statement for statement; a wrap starts over."""
    t = after.astimezone(s.zone)
    t = _add(t, _ONE - timedelta(microseconds=t.microsecond))
    added = False
    year_limit = t.year + 5
    while t.year <= year_limit:
        for step in _STEPS:
            t, added, wrapped = step(s, t, added)
            if wrapped:
                break
        else:
            return t.astimezone(UTC)
    return None
