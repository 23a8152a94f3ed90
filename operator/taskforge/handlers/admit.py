"""Before a run's first Job: may it start now under its Workflow's limits (Redis)?

Facts for `engine.start` (`RunAdmission`), gathered from the cache (the runs waiting ahead
of this one) and from Redis (`Limits.admit_run`). The engine only turns a refusal into a
Pending run that says why and until when.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from taskforge.api import TERMINAL_RUN_PHASES
from taskforge.api.durations import parse_timestamp
from taskforge.engine.facts import RunFacts
from taskforge.engine.limits import Waiter
from taskforge.engine.timing import (
    effective_priority,
    queued_since,
    raw_not_before,
    raw_queued_since,
)
from taskforge.handlers.limits import Limits, RunGate
from taskforge.handlers.store import Key, Store


def _created(body: dict[str, Any], default: datetime) -> datetime:
    return parse_timestamp(body["metadata"].get("creationTimestamp")) or default


class RunAdmitter:
    def __init__(self, store: Store, limits: Limits) -> None:
        self.store = store
        self.limits = limits

    async def admit(self, key: Key, facts: RunFacts) -> RunGate | None:
        """Redis's answer for a run that has not started; None when no limit applies."""
        to_start = facts.spec_to_start() if self.limits.enabled else None
        if to_start is None:
            return None
        spec, workflow = to_start
        if spec.rate_limit is None and spec.concurrency is None:
            return None
        workflow = workflow or key[1]  # an inline spec's limits are its run's own
        default = spec.priority
        cap = self.limits.max_priority
        waiting: list[Waiter] = []
        for r in self.store.runs_of_workflow(key[0], workflow):
            status, run_spec = r.get("status") or {}, r.get("spec") or {}
            if status.get("startedAt") or status.get("phase") in TERMINAL_RUN_PHASES:
                continue
            created = _created(r, facts.now)
            if run_spec.get("cancel") or raw_not_before(run_spec, created, facts.now):
                continue  # a delayed run waits for its time, not for a slot
            priority = effective_priority(run_spec.get("priority"), default, cap)
            since = raw_queued_since(run_spec, created)
            waiting.append(Waiter(since, r["metadata"]["name"], priority))
        mine = effective_priority(facts.spec.priority, default, cap)
        # No field a user sets skips a limit: trigger.type is not trusted; a reservation is
        # only a claim that Limits checks in Redis (see adapters/reservations.py).
        return await self.limits.admit_run(
            spec,
            namespace=key[0],
            workflow=workflow,
            uid=facts.uid,
            me=Waiter(queued_since(facts.spec.start_at, facts.spec.start_after,
                                   facts.created_at), key[1], mine),
            priority=mine,
            waiting=waiting,
            now=facts.now,
            reservation=facts.spec.trigger.reservation if facts.spec.trigger else None,
        )
