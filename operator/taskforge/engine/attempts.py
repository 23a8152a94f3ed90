"""Attempt history and attempt times: what each attempt of a step did, and when it ended.

`status.steps.NAME.attempts` stays the count (printer columns, the CLI and scripts read it).
`attemptHistory` is added once a step is retried: a step that ran once is fully described by
its own startedAt, finishedAt, exitCode, failure and message, and 1,000 such steps must not
pay ~120 bytes each for a copy of them. From the first retry on, the history lists every
attempt (the one running too), oldest first, bounded by `history_limit`.

Every function returns the `StepStatus` changes to merge into one `Work.set` call, so a
step's status is still replaced exactly once per decision.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from taskforge.api.run import (
    MAX_ATTEMPT_HISTORY,
    MAX_ATTEMPT_MESSAGE_CHARS,
    AttemptReason,
    AttemptRecord,
    StepStatus,
)

HISTORY_RECORDS_PER_RUN = 500
"""Records a run's steps share: a 50-step run keeps the last 10 attempts of each step, a
1,000-step run the last 2. A record takes at most ~230 bytes of JSON, so even a 1,000-step
run whose every step is retried adds at most ~450 KiB (the status-size tests measure it)."""
MIN_HISTORY = 2
"""Always the attempt before the latest: it is the one whose failure caused the retry."""

_KUBELET_PRECISION = timedelta(seconds=1)


def history_limit(step_count: int) -> int:
    """How many attempts each step of a run with `step_count` steps keeps in its history."""
    share = HISTORY_RECORDS_PER_RUN // max(step_count, 1)
    return max(MIN_HISTORY, min(MAX_ATTEMPT_HISTORY, share))


def end_time(reported: datetime | None, observed: datetime) -> datetime:
    """When an attempt ended, to the millisecond.

    The kubelet reports a container's `finishedAt` in whole seconds (metav1.Time), which made
    a 44 ms step read "1.0s" or "0ms". The operator sees the pod end within milliseconds, on
    the same clock that stamped the attempt's start, so its observation is the better time,
    as long as it falls within the reported second. Observed later than that (an operator
    that was down, a queue that was busy), the reported second is the truth.
    """
    if reported is None or observed < reported + _KUBELET_PRECISION:
        return observed
    return reported


def short(message: str | None) -> str | None:
    if message is None or len(message) <= MAX_ATTEMPT_MESSAGE_CHARS:
        return message
    return message[: MAX_ATTEMPT_MESSAGE_CHARS - 1] + "\u2026"


def started(st: StepStatus, attempt: int, at: datetime, limit: int) -> dict[str, Any]:
    """Changes for launching `attempt`: a new record once the step has a history."""
    if attempt < 2 and st.attempt_history is None:
        return {}
    history = [r for r in st.attempt_history or () if r.attempt < attempt]
    history.append(AttemptRecord(attempt=attempt, started_at=at))
    return {"attempt_history": history[-limit:]}


def ended(
    st: StepStatus,
    *,
    at: datetime,
    exit_code: int | None,
    reason: AttemptReason,
    message: str | None,
    retrying: bool,
    limit: int,
) -> dict[str, Any]:
    """Changes for the end of the step's current attempt (`st.attempts`).

    A step's history begins when its first retry is decided (`retrying`); until then the
    step's own fields are its only attempt's record.
    """
    history = list(st.attempt_history or ())
    if not history and not retrying:
        return {}
    number = st.attempts
    current = next((r for r in history if r.attempt == number), None)
    if current is None:
        # The first retry (attempt 1 began at the step's startedAt), or a status written
        # before attemptHistory existed (the attempt's start is then unknown).
        current = AttemptRecord(attempt=number, started_at=st.started_at if number == 1 else None)
        history.append(current)
    done = current.model_copy(update={
        "finished_at": at, "exit_code": exit_code, "reason": reason,
        "message": short(message),
    })
    history = [done if r is current else r for r in history]
    return {"attempt_history": history[-limit:]}
