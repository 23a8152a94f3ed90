"""Retry policy: backoff values, limits, failure kinds, permanent failures, retryAfter."""

from __future__ import annotations

import pytest
from enginekit import retry
from taskforge.api.steps import Backoff, FailureKind, RetryPolicy
from taskforge.engine.results import StepResult, parse_result
from taskforge.engine.retry import backoff_seconds, decide

RETRYABLE = StepResult(ok=False, retryable=True, error="503")
PERMANENT = StepResult(ok=False, retryable=False, error="404")


@pytest.mark.parametrize(
    ("backoff", "attempt", "seconds"),
    [
        (Backoff(), 1, 10.0),
        (Backoff(), 2, 20.0),
        (Backoff(), 3, 40.0),
        (Backoff(), 7, 600.0),  # 640 s capped by maxDelay 10m
        (Backoff(delay="1s", factor=3.0), 4, 27.0),
        (Backoff(type="fixed", delay="5s"), 1, 5.0),
        (Backoff(type="fixed", delay="5s"), 9, 5.0),
        (Backoff(type="fixed", delay="20m", max_delay="10m"), 1, 600.0),
        (Backoff(delay="500ms", factor=2.0, max_delay="1h"), 3, 2.0),
        (Backoff(delay="1s", max_delay="1h"), 10_000, 3600.0),  # no float overflow
    ],
)
def test_backoff_seconds(backoff: Backoff, attempt: int, seconds: float) -> None:
    assert backoff_seconds(backoff, attempt) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("policy", "attempt", "kind", "result", "expected"),
    [
        (retry(2), 1, "Failed", RETRYABLE, (True, 10.0, "retrying in 10s")),
        (retry(2), 2, "Failed", RETRYABLE, (True, 20.0, "retrying in 20s")),
        (retry(2), 3, "Failed", RETRYABLE, (False, 0.0, "retries exhausted after 3 attempts")),
        (retry(2), 1, "Failed", PERMANENT, (False, 0.0, "permanent failure, not retried")),
        (retry(2), 1, "TimedOut", PERMANENT, (True, 10.0, "retrying in 10s")),
        (retry(2, on=["Failed"]), 1, "TimedOut", RETRYABLE,
         (False, 0.0, "TimedOut is not retried (retry.on)")),
        (retry(2, on=["PodFailure"]), 1, "PodFailure", RETRYABLE,
         (True, 10.0, "retrying in 10s")),
        (None, 1, "Failed", RETRYABLE, (False, 0.0, "no retries configured")),
        (retry(0), 1, "Failed", RETRYABLE, (False, 0.0, "no retries configured")),
        (retry(3, delay="1s"), 1, "Failed",
         StepResult(ok=False, retryable=True, retry_after=30.0),
         (True, 30.0, "retrying in 30s")),
        (retry(3, delay="1m"), 1, "Failed",
         StepResult(ok=False, retryable=True, retry_after=5.0),
         (True, 60.0, "retrying in 1m")),
        (retry(3, delay="1s"), 1, "Failed",
         StepResult(ok=False, retryable=True, retry_after=86_400.0), (True, 3600.0,
         "retrying in 1h")),
    ],
)
def test_decide(
    policy: RetryPolicy | None,
    attempt: int,
    kind: FailureKind,
    result: StepResult,
    expected: tuple[bool, float, str],
) -> None:
    decision = decide(policy, attempt, kind, result)
    assert (decision.retry, decision.delay, decision.reason) == expected


NOT_FOUND = StepResult(ok=False, retryable=False, error="HTTP 404", http_status=404)
CONFLICT = StepResult(ok=False, retryable=False, error="HTTP 409", http_status=409)
UNAVAILABLE = StepResult(ok=False, retryable=True, error="HTTP 503", http_status=503)
ON_404 = RetryPolicy(limit=2, on=["Failed", "HTTPStatus"], http_status=[404])
ONLY_404 = RetryPolicy(limit=2, on=["HTTPStatus"], http_status=[404])
NOT_BY_DEFAULT = (
    "permanent failure (HTTP 404), not retried (unless listed in retry.httpStatus with"
    " HTTPStatus in retry.on)"
)


@pytest.mark.parametrize(
    ("policy", "attempt", "kind", "result", "expected"),
    [
        # The default stays: a 4xx is permanent, and the reason says how to retry it.
        (retry(2), 1, "Failed", NOT_FOUND, (False, 0.0, NOT_BY_DEFAULT)),
        (ON_404, 1, "Failed", NOT_FOUND, (True, 10.0, "retrying in 10s")),
        (ON_404, 2, "Failed", NOT_FOUND, (True, 20.0, "retrying in 20s")),
        (ON_404, 3, "Failed", NOT_FOUND,
         (False, 0.0, "retries exhausted after 3 attempts")),
        # Only the listed codes: a 409 stays permanent.
        (ON_404, 1, "Failed", CONFLICT, (False, 0.0, NOT_BY_DEFAULT.replace("404", "409"))),
        # A listed code is retried even when `on` leaves out Failed; other failures are not.
        (ONLY_404, 1, "Failed", NOT_FOUND, (True, 10.0, "retrying in 10s")),
        (ONLY_404, 1, "Failed", UNAVAILABLE, (False, 0.0, "Failed is not retried (retry.on)")),
        (ONLY_404, 1, "TimedOut", NOT_FOUND, (False, 0.0, "TimedOut is not retried (retry.on)")),
        # A result without a status (a script's exit 78) is untouched by the list.
        (ON_404, 1, "Failed", PERMANENT, (False, 0.0, "permanent failure, not retried")),
        (None, 1, "Failed", NOT_FOUND, (False, 0.0, NOT_BY_DEFAULT)),
    ],
)
def test_decide_by_http_status(
    policy: RetryPolicy | None,
    attempt: int,
    kind: FailureKind,
    result: StepResult,
    expected: tuple[bool, float, str],
) -> None:
    decision = decide(policy, attempt, kind, result)
    assert (decision.retry, decision.delay, decision.reason) == expected


@pytest.mark.parametrize(
    "fields",
    [
        {"on": ["Failed"], "http_status": [404]},  # httpStatus without HTTPStatus
        {"on": ["HTTPStatus"]},  # HTTPStatus without codes
        {"on": ["HTTPStatus"], "http_status": [399]},
        {"on": ["HTTPStatus"], "http_status": [600]},
        {"on": ["HTTPStatus"], "http_status": []},
    ],
)
def test_http_status_policy_rejected(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy.model_validate({"limit": 1, **fields})


def test_http_status_parsed_from_the_result() -> None:
    message = '{"ok": false, "error": "HTTP 404", "retryable": false, "httpStatus": 404}'
    assert parse_result(message, 78).http_status == 404
    assert parse_result('{"ok": false, "httpStatus": "404"}', 78).http_status is None
    assert parse_result('{"ok": false, "httpStatus": true}', 78).http_status is None
    assert parse_result('{"ok": false}', 78).http_status is None
