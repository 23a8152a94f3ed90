"""Retry decisions: whether a failed attempt gets another one, and after how long.

Kept apart from the planner so the policy (limit, backoff, which failure kinds) can be
table-tested on its own. The delay is turned into an absolute `nextAttemptAt` by the planner
and written to status, so an operator restart neither loses nor repeats the wait.
"""

from __future__ import annotations

from dataclasses import dataclass

from taskforge.api.durations import format_duration, parse_duration
from taskforge.api.steps import Backoff, FailureKind, RetryPolicy
from taskforge.engine.results import StepResult

MAX_RETRY_AFTER_SECONDS = 3600.0
"""An executor's retryAfter hint (e.g. an HTTP Retry-After header) is honoured up to 1 h, so
a hostile or buggy server cannot park a step for days."""


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    delay: float = 0.0
    reason: str = ""


def backoff_seconds(backoff: Backoff, attempt: int) -> float:
    """Wait after failed attempt number `attempt` (1-based): delay * factor^(attempt-1).

    `fixed` always waits `delay`. Both are capped by `maxDelay`; the exponent is capped too
    so a large attempt number cannot overflow a float.
    """
    delay = parse_duration(backoff.delay)
    cap = parse_duration(backoff.max_delay)
    if backoff.type == "exponential":
        delay *= backoff.factor ** min(max(attempt - 1, 0), 64)
    return min(delay, cap)


def decide(
    policy: RetryPolicy | None, attempt: int, kind: FailureKind, result: StepResult
) -> RetryDecision:
    """Decide about the attempt after failed attempt `attempt` (1-based).

    Permanent failures (exit 78, `retryable: false`) are not retried: another attempt would
    fail the same way and only delay the dead-letter record. The one exception is an HTTP
    status the policy lists (`on: [HTTPStatus]`, `httpStatus: [404]`): the user knows that
    this server's 404 means "not yet", which the executor cannot. A listed status is retried
    whether the executor called it permanent or retryable, even when `on` leaves out Failed.
    """
    listed = _listed_status(policy, kind, result)
    if kind == "Failed" and not result.retryable and not listed:
        return RetryDecision(False, reason=_permanent_reason(result))
    if policy is None or policy.limit == 0:
        return RetryDecision(False, reason="no retries configured")
    if kind not in policy.on and not listed:
        return RetryDecision(False, reason=f"{kind} is not retried (retry.on)")
    if attempt > policy.limit:
        return RetryDecision(False, reason=f"retries exhausted after {attempt} attempts")
    delay = backoff_seconds(policy.backoff, attempt)
    if result.retry_after is not None:
        delay = max(delay, min(result.retry_after, MAX_RETRY_AFTER_SECONDS))
    return RetryDecision(True, delay=delay, reason=f"retrying in {format_duration(delay)}")


def _listed_status(policy: RetryPolicy | None, kind: FailureKind, result: StepResult) -> bool:
    """The attempt ended with an HTTP status that the policy retries by name."""
    return (
        policy is not None
        and kind == "Failed"
        and result.http_status is not None
        and "HTTPStatus" in policy.on
        and result.http_status in (policy.http_status or ())
    )


def _permanent_reason(result: StepResult) -> str:
    if result.http_status is not None:
        return (f"permanent failure (HTTP {result.http_status}), not retried (unless listed in"
                " retry.httpStatus with HTTPStatus in retry.on)")
    return "permanent failure, not retried"
