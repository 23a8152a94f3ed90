"""Holding back a planned launch: rate limits and concurrency slots (DESIGN.md, "Redis").

The planner does not know about Redis. The adapter applies a plan's new CreateJobs only
after the limiter allowed them; for a step it must hold back, it calls `hold_back`, which
turns the launch into a wait: phase Waiting with `waitUntil`, and the attempt counter back
where it was. The next plan after `waitUntil` offers the same launch again (same attempt
number, same Job name), so a held-back step is never failed and never skips an attempt.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from taskforge.engine.actions import CreateJob, EmitEvent, Plan
from taskforge.engine.naming import job_name


def hold_back(
    result: Plan, *, step: str, run_name: str, until: datetime, now: datetime, reason: str
) -> Plan:
    """`result` without the new launch of `step`, which waits until `until` instead.

    Only new launches (`CreateJob.is_new`) can be held back: a repeated CreateJob is for a
    Job that most likely exists already, so it keeps its slot. Unknown steps are ignored.
    """
    create = next(
        (a for a in result.actions if isinstance(a, CreateJob) and a.step == step and a.is_new),
        None,
    )
    steps = dict(result.status.steps or {})
    if create is None or step not in steps:
        return result
    actions = tuple(
        a
        for a in result.actions
        if a is not create
        and not (isinstance(a, EmitEvent) and a.reason == "StepStarted" and a.step == step)
    )
    previous = create.attempt - 1
    st = steps[step]
    steps[step] = st.model_copy(
        update={
            "phase": "Waiting",
            "attempts": previous,
            "job_name": job_name(run_name, step, previous) if previous else None,
            "started_at": st.started_at if previous else None,
            "wait_until": until,
            "message": reason,
        }
    )
    wait = max((until - now).total_seconds(), 0.0)
    requeue = wait if result.requeue_after is None else min(wait, result.requeue_after)
    status = result.status.model_copy(update={"steps": steps})
    return replace(result, actions=actions, status=status, requeue_after=requeue)
