"""Go-style durations ("90s", "5m", "1h30m"), the format Kubernetes users already write; and
the millisecond timestamps of status.

Status times carry milliseconds (RFC 3339, "2026-01-01T12:00:00.123Z"): whole seconds made a
44 ms step read "1.0s" or "0ms" and rounded every backoff wait up by as much as a second.
The CRD types them `string`, `format: date-time`, which the API server accepts with a fraction.
Milliseconds, not microseconds: they are as fine as a watch event's latency, and every
timestamp costs 4 bytes more, not 7, in a 1,000-step status. Conditions keep whole seconds
(engine/conditions.py): their `lastTransitionTime` is a metav1.Time for clients in Go.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Annotated, Any

from pydantic import PlainSerializer, StringConstraints

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
Duration = Annotated[str, StringConstraints(max_length=32)]
"""A duration field of a resource, e.g. 30s: at most 32 characters (every spec string is
bounded), with `pattern=DURATION_PATTERN` on each field."""
_GO_PART = re.compile(r"([0-9]*\.?[0-9]*)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9,
            "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_go_duration_ns(text: str) -> int:
    """Go's `time.ParseDuration`, exactly, in integer nanoseconds: the one duration parser.

    Exact because a cron `@every 1.5h` must mean what the CronJob controller (Go) reads;
    the CRDs' stricter pattern (DURATION_PATTERN: no sign, no ns/us) is checked on top of
    it by `parse_duration`. Raises ValueError naming the text."""
    rest, sign = text, 1
    if rest and rest[0] in "+-":
        sign, rest = (-1 if rest[0] == "-" else 1), rest[1:]
    if rest == "0":
        return 0
    total, pos = Fraction(0), 0
    while rest and pos < len(rest):
        m = _GO_PART.match(rest, pos)
        if m is None or m.group(1) in ("", "."):
            break
        total += Fraction(m.group(1).rstrip(".") or "0") * _UNIT_NS[m.group(2)]
        pos = m.end()
    else:
        if rest and total < 1 << 63:
            return sign * int(total)
    raise ValueError(f"invalid duration {text!r}")


def parse_duration(text: str) -> float:
    """Seconds in a duration as the CRDs accept it (DURATION_PATTERN: 30s, 1h30m, 500ms);
    raises ValueError naming the bad text."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(
            f"invalid duration {text!r}: use a number with ms, s, m or h, like 30s or 1h30m"
        )
    return parse_go_duration_ns(text) / 1e9


def format_duration(seconds: float) -> str:
    """The shortest readable form, for status messages and the CLI: 44ms, 1.5s, 1m30s.

    Under a minute, tenths of a second are kept (a 1.4 s step is not "1s"); beyond, seconds.
    """
    if seconds < 0.9995:
        return f"{round(seconds * 1000)}ms"
    if seconds < 59.95:
        return f"{round(seconds, 1):g}s"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if secs or not out:
        out += f"{secs}s"
    return out


def parse_timestamp(value: Any) -> datetime | None:
    """A Kubernetes RFC 3339 timestamp ("2026-01-01T12:00:00Z"); None when unset."""
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def to_millis(when: datetime) -> datetime:
    """`when` cut to whole milliseconds, the precision status keeps, so a time the engine
    holds in memory equals the one it reads back from the API server."""
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def ceil_millis(when: datetime) -> datetime:
    """`when` rounded up to whole milliseconds: a wait written to status is never cut short."""
    cut = to_millis(when)
    return cut if cut == when else cut + timedelta(milliseconds=1)


def format_timestamp(when: datetime) -> str:
    """RFC 3339 in UTC with milliseconds: 2026-01-01T12:00:00.123Z."""
    utc = when.astimezone(UTC) if when.tzinfo is not None else when
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


Timestamp = Annotated[
    datetime, PlainSerializer(format_timestamp, return_type=str, when_used="json")
]
"""A status time: a datetime in Python, RFC 3339 with milliseconds on the wire."""
