"""Which finished runs of a workflow to delete: history limits and time-to-live.

Pure: the operator passes the finished runs it knows and the time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from taskforge.api.workflow import History

DEFAULT_HISTORY = History()


@dataclass(frozen=True)
class FinishedRun:
    name: str
    phase: str
    finished_at: datetime


@dataclass(frozen=True)
class Cleanup:
    delete: tuple[str, ...]
    requeue_after: float | None


def plan_cleanup(
    runs: Sequence[FinishedRun], history: History | None, now: datetime
) -> Cleanup:
    """Keep the newest N succeeded and N failed-or-cancelled runs, and none past their TTL.

    Same rules as a CronJob's successfulJobsHistoryLimit / failedJobsHistoryLimit
    plus a Job's ttlSecondsAfterFinished; ties are broken by name so the result
    does not depend on the order the cache lists them in.
    """
    policy = history or DEFAULT_HISTORY
    newest_first = sorted(runs, key=lambda r: (r.finished_at, r.name), reverse=True)
    succeeded = [r for r in newest_first if r.phase == "Succeeded"]
    failed = [r for r in newest_first if r.phase != "Succeeded"]
    doomed = {r.name for r in succeeded[policy.successful_runs:]}
    doomed |= {r.name for r in failed[policy.failed_runs:]}
    requeue: float | None = None
    if policy.ttl_seconds_after_finished is not None:
        ttl = timedelta(seconds=policy.ttl_seconds_after_finished)
        for run in newest_first:
            if run.name in doomed:
                continue
            expires = run.finished_at + ttl
            if expires <= now:
                doomed.add(run.name)
            else:
                wait = (expires - now).total_seconds()
                requeue = wait if requeue is None else min(requeue, wait)
    return Cleanup(delete=tuple(sorted(doomed)), requeue_after=requeue)
