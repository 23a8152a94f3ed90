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
    created_by_taskforge: bool = True
    """spec.trigger is set: cron, a webhook, the CLI (create, retry, dlq replay) made it. A run
    without it was applied by someone else (kubectl, Helm, a GitOps tool) and is kept unless
    the Workflow's history sets includeApplied."""


@dataclass(frozen=True)
class Cleanup:
    delete: tuple[str, ...]
    requeue_after: float | None


def plan_cleanup(
    runs: Sequence[FinishedRun], history: History | None, now: datetime
) -> Cleanup:
    """Keep the newest N succeeded and N failed-or-cancelled runs, and none past their TTL;
    of the runs Taskforge created only, unless the policy includes applied ones.

    Same rules as a CronJob's successfulJobsHistoryLimit / failedJobsHistoryLimit
    plus a Job's ttlSecondsAfterFinished; ties are broken by name so the result
    does not depend on the order the cache lists them in.
    """
    policy = history or DEFAULT_HISTORY
    if not policy.include_applied:
        # Left out of the counts too: a kept GitOps run must not push a triggered one out.
        runs = [r for r in runs if r.created_by_taskforge]
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
