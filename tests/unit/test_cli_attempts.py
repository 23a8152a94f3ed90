"""`taskforge show run`: the attempt history of a retried step, one line per attempt."""

from __future__ import annotations

from datetime import UTC, datetime

from taskforge.cli.render import span
from taskforge.cli.run_view import attempt_lines

NOW = datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC)


def test_each_attempt_is_a_line_with_milliseconds() -> None:
    st = {
        "attempts": 8,
        "attemptHistory": [
            {"attempt": 7, "startedAt": "2026-01-01T12:00:01.301Z",
             "finishedAt": "2026-01-01T12:00:01.345Z", "exitCode": 78, "reason": "Failed",
             "message": "GET http://x/: HTTP 404 Not Found"},
            {"attempt": 8, "startedAt": "2026-01-01T12:00:02.500Z"},
        ],
    }
    assert [line.plain for line in attempt_lines(st, NOW)] == [
        "6 earlier attempts not kept",
        "attempt 7  12:00:01.301  44ms  exit 78  Failed: GET http://x/: HTTP 404 Not Found",
        "attempt 8  12:00:02.500  2.5s so far",
    ]


def test_a_step_run_once_has_no_attempt_lines() -> None:
    assert attempt_lines({"attempts": 1}, NOW) == []


def test_a_44ms_step_reads_44ms() -> None:
    """Before, status had whole seconds: the same step read 1.0s or 0ms."""
    assert span("2026-01-01T12:00:00.980Z", "2026-01-01T12:00:01.024Z", NOW) == "44ms"
