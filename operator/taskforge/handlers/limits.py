"""Redis in the reconcile: run admission, step hold-backs, slot leases, dead-letter shipping.

Decisions stay in the engine: this module only asks Redis the questions the engine's
facts need (may this run start? may this step start?) and turns answers into facts or
into `defer.hold_back` calls. Without REDIS_URL every limit is inert and dead-letter
records simply stay in status; Workflows that ask for limits then say so in a condition.
The loops that keep this state alive between reconciles (the health probe, the renewal of
leases and places) are in redis_upkeep.py.

Three answers besides yes and no, each handled on purpose:
* busy (this process could not ask Redis in time): the limit holds, the work waits a second;
* unreachable with the `open` policy: the work goes on, and that is never silent: the run or
  step gets a `LimitNotApplied` Event, `taskforge_limits_skipped_total{kind}` counts it, and
  `outage()` turns the Workflows' `LimitsEnforced` condition False (`RedisUnavailable`);
* a webhook run's reservation (adapters/reservations.py, handlers/webhook_limits.py): the token
  was paid at delivery, and only a reservation made for exactly this run says so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from taskforge.adapters import metrics
from taskforge.adapters.deadletter import DeadLetterStream
from taskforge.adapters.ratelimit import RateLimiter
from taskforge.adapters.redis_client import RedisCallError, RedisConnection, RedisSettings
from taskforge.adapters.reservations import Reservations
from taskforge.adapters.slots import Slots
from taskforge.api.durations import format_duration, parse_duration
from taskforge.api.run import WorkflowRunStatus
from taskforge.api.timing import PRIORITY_MAX
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.actions import CreateJob, EmitEvent, Plan
from taskforge.engine.defer import hold_back
from taskforge.engine.facts import RunAdmission
from taskforge.engine.limits import (
    Waiter,
    holder_run_uid,
    queue_rank,
    run_rate_key,
    run_slot_key,
    step_holder,
    step_rate_key,
    step_slot_key,
)

log = logging.getLogger("taskforge.limits")
SLOT_TTL = float(os.environ.get("TASKFORGE_SLOT_TTL_SECONDS", "60"))
SHIP_RETRY = 5.0
RESERVATION_TTL = float(os.environ.get("TASKFORGE_RESERVATION_TTL_SECONDS", "600"))
"""How long a webhook run's paid token waits to be claimed; unclaimed after that (operator
down that long), the run pays again: never fewer checks than runs."""
CLAIM_KEEP = 60.0
"""How long a claimed reservation still answers for its run (a retried admission)."""
MAX_PRIORITY = int(os.environ.get("TASKFORGE_MAX_PRIORITY", str(PRIORITY_MAX)))
"""The chart's ceiling on spec.priority (value maxPriority): higher values count as this."""
SkipKind = Literal["run_rate", "run_concurrency", "step_rate", "step_concurrency", "webhook_rate"]
BUSY = "LimitsBusy"


def _stamp(t: datetime) -> str:
    return t.strftime("%H:%M:%SZ")


def _busy(retry_after: float) -> RunAdmission:
    return RunAdmission(False, BUSY, "the limits could not be checked in time (the operator's"
                        " Redis calls are queued); checking again", retry_after=retry_after)


@dataclass(frozen=True)
class RunGate:
    """The admission for the engine, and the Event to post when a limit was not applied."""

    admission: RunAdmission
    not_applied: EmitEvent | None = None


class Limits:
    def __init__(self, settings: RedisSettings | None) -> None:
        self.settings = settings
        self.conn = RedisConnection(settings) if settings is not None else None
        self.limiter = RateLimiter(self.conn) if self.conn else None
        self.slots = Slots(self.conn) if self.conn else None
        self.reservations = Reservations(self.conn) if self.conn else None
        self.max_priority = MAX_PRIORITY
        self.wake: Callable[[list[str]], None] | None = None
        """Set by the operator: requeue the runs (by uid) whose steps wait for a freed slot."""
        self._offers: dict[str, set[str]] = {}

    @property
    def enabled(self) -> bool:
        return self.conn is not None

    def outage(self) -> str | None:
        """Why limits are not applied right now (Redis unreachable, policy open), or None."""
        if self.conn is None or self.conn.healthy or self.conn.settings.rate_limit_policy != "open":
            return None
        return (f"Redis at {self.conn.settings.server()} is unreachable"
                f" ({self.conn.last_error}); with TASKFORGE_RATE_LIMIT_POLICY=open, rate and"
                " concurrency limits are not applied until it is back")

    def on_health_change(self, callback: Callable[[bool], None]) -> None:
        if self.conn is not None:
            self.conn.on_change = callback

    def _skipped(self, kind: SkipKind, what: list[str], text: str) -> None:
        metrics.LIMITS_SKIPPED.labels(kind).inc()
        what.append(text)

    def _not_applied(self, what: list[str], step: str | None = None) -> EmitEvent | None:
        if not what:
            return None
        server = self.conn.settings.server() if self.conn else "?"
        return EmitEvent("Warning", "LimitNotApplied",
                         f"{'; '.join(what)}: not applied, Redis at {server} is unreachable"
                         " (TASKFORGE_RATE_LIMIT_POLICY=open)", step)

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
        reservation: str | None = None,
        priority: int = 0,
    ) -> RunGate | None:
        """Slot first (in creation order), then a rate token; a refused token gives the slot
        back so a rate-limited run never blocks the concurrency of others.

        The token is not taken again only when ``reservation`` (spec.trigger.reservation,
        which anyone can write) is claimed in Redis for exactly this run: see
        adapters/reservations.py. It is claimed before the slot so that a webhook run waiting
        for a slot keeps its paid token alive."""
        if self.slots is None or self.limiter is None:
            return None
        skipped: list[str] = []
        paid = False
        if spec.rate_limit is not None and reservation:
            keep = RESERVATION_TTL if spec.concurrency is not None else CLAIM_KEEP
            paid = await self._claim(namespace, workflow, me.name, reservation, uid=uid,
                                     keep=keep)
        held_slot = False
        if spec.concurrency is not None:
            rank = queue_rank(me, waiting)
            grant = await self.slots.acquire(
                run_slot_key(namespace, workflow), uid, spec.concurrency.max_runs, SLOT_TTL, rank
            )
            if grant.busy:
                return RunGate(_busy(grant.retry_after))
            if grant.degraded and grant.acquired:
                self._skipped("run_concurrency", skipped,
                              f"concurrency maxRuns {spec.concurrency.max_runs}")
            if not grant.acquired:
                return RunGate(RunAdmission(
                    False,
                    "ConcurrencyLimited",
                    f"{grant.active} of {spec.concurrency.max_runs} runs of {workflow!r} running;"
                    f" {rank + 1} in line",
                    retry_after=max(grant.retry_after, 1.0),
                ))
            held_slot = True
        if spec.rate_limit is not None and not paid:
            per = parse_duration(spec.rate_limit.per)
            got = await self.limiter.acquire(
                run_rate_key(namespace, workflow), spec.rate_limit.limit, per, waiter=uid,
                priority=priority,
            )
            if not got.allowed:
                if held_slot:
                    await self.release_run(namespace, workflow, uid)
                if got.busy:
                    return RunGate(_busy(got.retry_after))
                until = now + timedelta(seconds=got.retry_after)
                return RunGate(RunAdmission(
                    False,
                    "RateLimited",
                    f"rate limit {spec.rate_limit.limit} per {spec.rate_limit.per}: waiting"
                    f" until {_stamp(until)}",
                    retry_after=got.retry_after,
                ))
            if got.degraded:
                self._skipped("run_rate", skipped,
                              f"rate limit {spec.rate_limit.limit} per {spec.rate_limit.per}")
        return RunGate(RunAdmission(True), self._not_applied(skipped))

    async def _claim(
        self, namespace: str, workflow: str, run: str, reservation: str, *, uid: str,
        keep: float,
    ) -> bool:
        """Whether the run's reservation is valid for it; an unanswered claim is not (the
        token check that follows meets the same Redis and answers for it)."""
        if self.reservations is None:
            return False
        try:
            return await self.reservations.claim(namespace, workflow, run, reservation,
                                                 uid=uid, keep=keep)
        except RedisCallError as exc:
            log.debug("reservation of %s/%s not checked: %s", namespace, run, exc)
            return False

    async def release_run(self, namespace: str, workflow: str, uid: str) -> None:
        if self.slots is None:
            return
        try:
            await self.slots.release(run_slot_key(namespace, workflow), uid)
        except RedisCallError as exc:
            log.warning(
                "could not release run slot of %s/%s: %s (it expires)", namespace, workflow, exc
            )

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
        priority: int = 0,
    ) -> Plan:
        """Hold back new launches of steps whose key has no token or no free slot (or whose
        limits could not be checked in time); say so when a limit was not applied."""
        if self.slots is None or self.limiter is None:
            return plan
        steps = {s.name: s for s in spec.all_steps}
        skipped: list[str] = []
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
                grant = await self.slots.acquire_queued(
                    step_slot_key(namespace, step.concurrency.key), holder,
                    step.concurrency.max_running, SLOT_TTL, priority=priority,
                    place_ttl=SLOT_TTL,
                )
                if grant.busy:
                    wait, why = grant.retry_after, "limits not checked in time (Redis busy)"
                elif not grant.acquired:
                    wait = max(grant.retry_after, 1.0)
                    why = (f"concurrency key {step.concurrency.key!r}: {grant.active} of"
                           f" {step.concurrency.max_running} running; {grant.ahead + 1} in line")
                elif grant.degraded:
                    self._skipped("step_concurrency", skipped, f"step {step.name!r}:"
                                  f" concurrency key {step.concurrency.key!r}")
            if wait is None and step.rate_limit is not None:
                got = await self.limiter.acquire(
                    step_rate_key(namespace, step.rate_limit.key),
                    step.rate_limit.limit,
                    parse_duration(step.rate_limit.per),
                    waiter=holder,
                    priority=priority,
                )
                if not got.allowed:
                    wait = got.retry_after
                    why = (
                        "limits not checked in time (Redis busy)" if got.busy else
                        f"rate limit {step.rate_limit.key!r} ({step.rate_limit.limit} per"
                        f" {step.rate_limit.per}): waiting {format_duration(wait)}"
                    )
                    if step.concurrency is not None:
                        await self.release_step(namespace, step.concurrency.key, holder,
                                                step.concurrency.max_running)
                elif got.degraded:
                    self._skipped("step_rate", skipped,
                                  f"step {step.name!r}: rate limit {step.rate_limit.key!r}")
            if wait is not None:
                until = now + timedelta(seconds=wait)
                plan = hold_back(
                    plan, step=step.name, run_name=run_name, until=until, now=now, reason=why
                )
        event = self._not_applied(skipped)
        return plan if event is None else replace(plan, actions=(*plan.actions, event))

    async def release_step(self, namespace: str, key: str, holder: str, first: int = 1) -> None:
        """Give back the step's slot and place, and wake the runs of the first ``first``
        waiters now in line (a freed slot is handed on at once, in priority order)."""
        if self.slots is None:
            return
        try:
            _, waiters = await self.slots.release_next(step_slot_key(namespace, key), holder,
                                                       first)
        except RedisCallError as exc:
            log.warning("could not release step slot %s: %s (it expires)", holder, exc)
            return
        for waiter in waiters:
            uid, _, step = waiter.partition("/")
            self._offers.setdefault(uid, set()).add(step)
        if waiters and self.wake is not None:
            self.wake([holder_run_uid(w) for w in waiters])

    def take_offers(self, uid: str) -> frozenset[str]:
        """The run's steps a freed slot was offered to since its last plan (RunFacts)."""
        return frozenset(self._offers.pop(uid, ()))

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
            await self.release_step(namespace, step.concurrency.key, step_holder(uid, step.name),
                                    step.concurrency.max_running)

    async def renew(self, leases: Iterable[tuple[str, str]],
                    places: Iterable[tuple[str, str]] = ()) -> None:
        """Extend every lease still in use and every waiting step's place; a crashed
        operator's leases and places lapse instead."""
        if self.slots is None:
            return
        by_key: dict[str, list[str]] = {}
        for key, holder in places:
            by_key.setdefault(key, []).append(holder)
        try:
            for key, holder in leases:
                await self.slots.renew(key, holder, SLOT_TTL)
            for key, holders in by_key.items():
                await self.slots.keep_places(key, holders, SLOT_TTL)
        except RedisCallError:
            return

    # -- dead letters -----------------------------------------------------------
    async def ship(
        self, status: WorkflowRunStatus, namespace: str, run: str, workflow: str | None
    ) -> tuple[WorkflowRunStatus, float | None]:
        """Ship an unshipped dead-letter record; marked shipped only once Redis has it."""
        letter = status.dead_letter
        if letter is None or letter.shipped or self.conn is None:
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
            stream_id = await DeadLetterStream(self.conn, namespace).ship(record)
        except RedisCallError as exc:
            log.warning("dead letter of %s/%s waits in status: %s", namespace, run, exc)
            return status, SHIP_RETRY
        shipped = letter.model_copy(update={"shipped": True, "stream_id": stream_id})
        return status.model_copy(update={"dead_letter": shipped}), None

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.aclose()
