"""The one duration parser (api/durations.py): Go's time.ParseDuration, and the CRDs' subset.

Every duration in Taskforge goes through `parse_go_duration_ns`: the CRD fields (retry
delays, timeouts, rate-limit periods) via `parse_duration`, which first checks the CRD
pattern; cron's `@every` (engine/cron.py), which takes any Go duration as CronJob does; and
the Redis settings (adapters/redis_client.parse_seconds), which add bare seconds and days.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from taskforge.api.durations import parse_duration, parse_go_duration_ns
from taskforge.engine.cron import CronError, parse_cron

NS = 10**9


@pytest.mark.parametrize(("text", "ns"), [
    ("0", 0), ("1s", NS), ("1.5h", 5400 * NS), ("1h30m", 5400 * NS), ("300ms", 3 * 10**8),
    ("-1.5m", -90 * NS), ("+2s", 2 * NS), ("1us", 1000), ("1µs", 1000), ("2ns", 2),
    (".5s", NS // 2), ("5.s", 5 * NS), ("1h1m1s1ms1us1ns", 3661 * NS + 10**6 + 10**3 + 1),
])
def test_go_durations(text: str, ns: int) -> None:
    assert parse_go_duration_ns(text) == ns


@pytest.mark.parametrize("text", ["", "1", "s", "1d", "1 s", "--1s", ".s", "1s2", "9999999999h"])
def test_what_go_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_go_duration_ns(text)


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30.0), ("1h30m", 5400.0),
                                                ("0.1s", 0.1), ("500ms", 0.5)])
def test_crd_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["1us", "-1s", "0", ".5s"])
def test_crd_durations_are_the_stricter_subset(text: str) -> None:
    parse_go_duration_ns(text)  # Go reads it...
    with pytest.raises(ValueError, match="use a number with ms, s, m or h"):
        parse_duration(text)  # ...the CRD pattern does not


def test_cron_every_uses_the_same_parser() -> None:
    assert parse_cron("@every 1.5h", ZoneInfo("UTC")).every is not None
    with pytest.raises(CronError, match="failed to parse duration @every 1d"):
        parse_cron("@every 1d", ZoneInfo("UTC"))
