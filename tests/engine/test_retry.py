"""Retry policy: backoff values, limits, failure kinds, permanent failures, retryAfter."""

from __future__ import annotations

import pytest
from enginekit import retry
from taskforge.api.steps import Backoff, FailureKind, RetryPolicy
from taskforge.engine.results import StepResult
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
