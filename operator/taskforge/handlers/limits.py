"""Redis in the reconcile: run admission, step hold-backs, slot leases, dead-letter shipping.

Decisions stay in the engine: this module only asks Redis the questions the engine's
facts need (may this run start? may this step start?) and turns answers into facts or
into `defer.hold_back` calls. Without REDIS_URL every limit is inert and dead-letter
records simply stay in status; Workflows that ask for limits then say so in a condition.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from taskforge.adapters.deadletter import DeadLetterStream
from taskforge.adapters.ratelimit import RateLimiter
from taskforge.adapters.redis_client import RedisConnection, RedisSettings, RedisUnavailableError
from taskforge.adapters.slots import Slots
from taskforge.api.durations import format_duration, parse_duration
from taskforge.api.run import WorkflowRunStatus
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.actions import CreateJob, Plan
from taskforge.engine.defer import hold_back
from taskforge.engine.facts import RunAdmission
from taskforge.engine.limits import (
    Waiter,
    queue_rank,
    run_rate_key,
    run_slot_key,
    step_holder,
    step_rate_key,
    step_slot_key,
)

log = logging.getLogger("taskforge.limits")
SLOT_TTL = float(os.environ.get("TASKFORGE_SLOT_TTL_SECONDS", "60"))
RENEW_EVERY = SLOT_TTL / 3
SHIP_RETRY = 5.0


def _stamp(t: datetime) -> str:
    return t.strftime("%H:%M:%SZ")



class Limits:
    def __init__(self, settings: RedisSettings | None) -> None:
        self.settings = settings
        self.conn = RedisConnection(settings) if settings is not None else None
        self.limiter = RateLimiter(self.conn) if self.conn else None
        self.slots = Slots(self.conn) if self.conn else None
        self.dlq = DeadLetterStream(self.conn) if self.conn else None

    @property
    def enabled(self) -> bool:
        return self.conn is not None

    # -- runs -----------------------------------------------------------------
    async def admit_run(
        self,
        spec: WorkflowSpec,
        *,
        namespace: str,
        workflow: str,
        uid: str,
        me: Waiter,
        waiting: Iterable[Waiter],
        now: datetime,
        rate_checked: bool = False,
    ) -> RunAdmission | None:
        """Slot first (in creation order), then a rate token; a refused token gives the slot
        back so a rate-limited run never blocks the concurrency of others."""
        if self.slots is None or self.limiter is None:
            return None
        held_slot = False
        if spec.concurrency is not None:
            rank = queue_rank(me, waiting)
            grant = await self.slots.acquire(
                run_slot_key(namespace, workflow), uid, spec.concurrency.max_runs, SLOT_TTL, rank
            )
            if not grant.acquired:
                return RunAdmission(
                    False,
                    "ConcurrencyLimited",
                    f"{grant.active} of {spec.concurrency.max_runs} runs of {workflow!r} running;"
                    f" {rank + 1} in line",
                    retry_after=max(grant.retry_after, 1.0),
                )
            held_slot = True
        if spec.rate_limit is not None and not rate_checked:
            per = parse_duration(spec.rate_limit.per)
            got = await self.limiter.acquire(
                run_rate_key(namespace, workflow), spec.rate_limit.limit, per, waiter=uid
            )
            if not got.allowed:
                if held_slot:
                    await self.release_run(namespace, workflow, uid)
                until = now + timedelta(seconds=got.retry_after)
                return RunAdmission(
                    False,
                    "RateLimited",
                    f"rate limit {spec.rate_limit.limit} per {spec.rate_limit.per}: waiting"
                    f" until {_stamp(until)}",
                    retry_after=got.retry_after,
                )
        return RunAdmission(True)

    async def release_run(self, namespace: str, workflow: str, uid: str) -> None:
        if self.slots is None:
            return
        try:
            await self.slots.release(run_slot_key(namespace, workflow), uid)
        except RedisUnavailableError as exc:
            log.warning(
                "could not release run slot of %s/%s: %s (it expires)", namespace, workflow, exc
            )

    async def webhook_admit(
        self, namespace: str, workflow: str, spec: WorkflowSpec
    ) -> float | None:
        """Webhook deliveries spend the workflow's run-start tokens (429 when none)."""
        if self.limiter is None or spec.rate_limit is None:
            return None
        got = await self.limiter.acquire(
            run_rate_key(namespace, workflow),
            spec.rate_limit.limit,
            parse_duration(spec.rate_limit.per),
        )
        return None if got.allowed else max(got.retry_after, 0.001)

    # -- steps ----------------------------------------------------------------
    async def gate_steps(
        self,
        plan: Plan,
        spec: WorkflowSpec,
        *,
        namespace: str,
        uid: str,
        run_name: str,
        now: datetime,
    ) -> Plan:
        """Hold back new launches of steps whose key has no token or no free slot."""
        if self.slots is None or self.limiter is None:
            return plan
        steps = {s.name: s for s in spec.all_steps}
        for action in plan.actions:
            if not isinstance(action, CreateJob) or not action.is_new:
                continue
            step = steps.get(action.step)
            if step is None or not (step.rate_limit or step.concurrency):
                continue
            holder = step_holder(uid, step.name)
            wait: float | None = None
            why = ""
            if step.concurrency is not None:
                grant = await self.slots.acquire(
                    step_slot_key(namespace, step.concurrency.key),
                    holder,
                    step.concurrency.max_running,
                    SLOT_TTL,
                )
                if not grant.acquired:
                    wait = max(grant.retry_after, 1.0)
                    why = (
                        f"concurrency key {step.concurrency.key!r}: {grant.active} of"
                        f" {step.concurrency.max_running} running"
                    )
            if wait is None and step.rate_limit is not None:
                got = await self.limiter.acquire(
                    step_rate_key(namespace, step.rate_limit.key),
                    step.rate_limit.limit,
                    parse_duration(step.rate_limit.per),
                    waiter=holder,
                )
                if not got.allowed:
                    wait = got.retry_after
                    why = (
                        f"rate limit {step.rate_limit.key!r} ({step.rate_limit.limit} per"
                        f" {step.rate_limit.per}): waiting {format_duration(wait)}"
                    )
                    if step.concurrency is not None:
                        await self.release_step(namespace, step.concurrency.key, holder)
            if wait is not None:
                until = now + timedelta(seconds=wait)
                plan = hold_back(
                    plan, step=step.name, run_name=run_name, until=until, now=now, reason=why
                )
        return plan

    async def release_step(self, namespace: str, key: str, holder: str) -> None:
        if self.slots is None:
            return
        try:
            await self.slots.release(step_slot_key(namespace, key), holder)
        except RedisUnavailableError as exc:
            log.warning("could not release step slot %s: %s (it expires)", holder, exc)

    async def release_finished(
        self,
        namespace: str,
        uid: str,
        spec: WorkflowSpec | None,
        old: WorkflowRunStatus | None,
        new: WorkflowRunStatus,
    ) -> None:
        """Give back the slots of steps that just ended."""
        if self.slots is None or spec is None:
            return
        before = (old.steps or {}) if old else {}
        for step in spec.all_steps:
            if step.concurrency is None:
                continue
            now_phase = (new.steps or {}).get(step.name)
            was = before.get(step.name)
            if now_phase is None or now_phase.phase in (
                "Running",
                "Pending",
                "Waiting",
                "Retrying",
            ):
                continue
            if was is not None and was.phase == now_phase.phase:
                continue
            await self.release_step(namespace, step.concurrency.key, step_holder(uid, step.name))

    async def renew(self, leases: Iterable[tuple[str, str]]) -> None:
        """Extend every lease still in use; a crashed operator's leases lapse instead."""
        if self.slots is None:
            return
        for key, holder in leases:
            try:
                await self.slots.renew(key, holder, SLOT_TTL)
            except RedisUnavailableError:
                return

    # -- dead letters -----------------------------------------------------------
    async def ship(
        self, status: WorkflowRunStatus, namespace: str, run: str, workflow: str | None
    ) -> tuple[WorkflowRunStatus, float | None]:
        """Ship an unshipped dead-letter record; marked shipped only once Redis has it."""
        letter = status.dead_letter
        if letter is None or letter.shipped or self.dlq is None:
            return status, None
        record: dict[str, Any] = {
            "id": letter.id,
            "workflow": workflow or "",
            "namespace": namespace,
            "run": run,
            "step": letter.step,
            "params": status.params or {},
            "error": letter.error,
            "attempts": letter.attempts,
            "failedAt": letter.failed_at,
        }
        try:
            stream_id = await self.dlq.ship(record)
        except RedisUnavailableError as exc:
            log.warning("dead letter of %s/%s waits in status: %s", namespace, run, exc)
            return status, SHIP_RETRY
        shipped = letter.model_copy(update={"shipped": True, "stream_id": stream_id})
        return status.model_copy(update={"dead_letter": shipped}), None

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.aclose()


async def renew_forever(limits: Limits, leases: Any) -> None:
    """Background task: renew leases of running runs and steps every RENEW_EVERY seconds."""
    while True:
        await asyncio.sleep(RENEW_EVERY)
        try:
            await limits.renew(leases())
        except Exception:
            log.exception("renewing slot leases failed")
