"""Workflow housekeeping: the Valid condition, status summary, and run-history cleanup."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from taskforge.adapters import kube, metrics
from taskforge.adapters.events import post_event
from taskforge.adapters.patch import merge_patch
from taskforge.api import TERMINAL_RUN_PHASES, WorkflowSpec
from taskforge.api.durations import parse_timestamp
from taskforge.api.workflow import Schedule
from taskforge.engine.history import FinishedRun, plan_cleanup
from taskforge.engine.schedule import (
    ActiveRun,
    SchedulePlan,
    plan_schedule,
    scheduled_run_manifest,
)
from taskforge.engine.triggers import LABEL_TRIGGER
from taskforge.engine.validation import with_schedule, workflow_status
from taskforge.handlers.failures import RECONCILE_ERROR, retry_later
from taskforge.handlers.queue import WorkQueue
from taskforge.handlers.store import Key, Store

MISSED_REASONS = frozenset({"MissSchedule", "TooManyMissedTimes", "RunAlreadyActive"})
"""The schedule events that mean a time was not started (taskforge_cron_missed_schedules)."""

log = logging.getLogger("taskforge.workflows")


class WorkflowReconciler:
    def __init__(
        self, store: Store, queue: WorkQueue[Key], runs: WorkQueue[Key], *,
        redis_configured: bool = False,
        redis_outage: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.redis_configured = redis_configured
        self.redis_outage = redis_outage  # why limits are skipped now (Redis down, policy open)
        self.store = store
        self.queue = queue
        self.runs = runs

    async def reconcile(self, key: Key) -> None:
        try:
            await self._reconcile(key)
        except Exception as exc:  # backoff per workflow, and an Event now and then
            metrics.QUEUE_RETRIES.labels("workflows").inc()
            message = retry_later(self.queue, key, exc, "workflow")
            body = self.store.workflows.get(key)
            if message is not None and body is not None:
                try:
                    await asyncio.to_thread(post_event, body, "Warning", RECONCILE_ERROR,
                                            message, datetime.now(UTC))
                except Exception as err:
                    log.warning("could not post event %s: %s", RECONCILE_ERROR, err)
        else:
            self.queue.forget(key)

    async def _reconcile(self, key: Key) -> None:
        body = self.store.workflows.get(key)
        if body is None:
            return
        meta = body.get("metadata") or {}
        now = datetime.now(UTC)
        runs = self.store.runs_of_workflow(*key)
        spec: WorkflowSpec | None = None
        error: str | None = None
        try:
            spec = WorkflowSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            error = f"spec.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        old = body.get("status") or {}
        generation = int(meta.get("generation") or 1)
        new = workflow_status(
            old_status=old,
            spec=spec,
            spec_error=error,
            generation=generation,
            runs=[_run_summary(r) for r in runs],
            now=now,
            redis_configured=self.redis_configured,
            redis_outage=self.redis_outage(),
        )
        schedule = spec.triggers.schedule if spec and spec.triggers else None
        plan = None
        if schedule is not None and not error:
            plan = plan_schedule(
                key[1],
                schedule,
                created=parse_timestamp(meta.get("creationTimestamp")) or now,
                last_schedule_time=parse_timestamp(old.get("lastScheduleTime")),
                runs=[_active_run(r) for r in runs
                      if (r["metadata"].get("labels") or {}).get(LABEL_TRIGGER) == "schedule"],
                now=now,
            )
            await self._carry_out(key, body, schedule, plan, now)
        new = with_schedule(new, plan, generation, now)
        patch = merge_patch(old, new)
        if patch:
            try:
                stored = await asyncio.to_thread(kube.patch_status, kube.WORKFLOWS, key[0],
                                                 key[1], {"status": patch})
                self.store.wrote_workflow(key, stored)
            except Exception as exc:
                if not kube.is_status(exc, 404):
                    raise
        await self._cleanup(key, spec, runs, now)

    async def _carry_out(
        self, key: Key, body: dict[str, Any], schedule: Schedule, plan: SchedulePlan,
        now: datetime,
    ) -> None:
        """Replace's deletions, the scheduled run (409 means it exists: started), events."""
        for name in plan.delete_active:
            log.info("deleting run %s/%s (concurrencyPolicy Replace)", key[0], name)
            await asyncio.to_thread(kube.delete_object, kube.RUNS, key[0], name)
        if plan.start is not None:
            manifest = scheduled_run_manifest(key[0], key[1], plan.start, schedule)
            try:
                await asyncio.to_thread(kube.create_object, kube.RUNS, key[0], manifest)
                log.info("started scheduled run %s/%s for %s", key[0], plan.start.run_name,
                         plan.start.scheduled_time.isoformat())
                metrics.CRON_LATENESS.labels(key[0], metrics.workflow_label(key[1])).observe(
                    max(0.0, (datetime.now(UTC) - plan.start.scheduled_time).total_seconds()))
            except Exception as exc:
                if not kube.is_status(exc, 409):
                    raise
        for event in plan.events:
            if event.reason in MISSED_REASONS:
                metrics.CRON_MISSED.labels(key[0], metrics.workflow_label(key[1]),
                                           event.reason).inc()
            try:
                await asyncio.to_thread(post_event, body, event.type, event.reason,
                                        event.message, now)
            except Exception as exc:
                log.warning("could not post event %s: %s", event.reason, exc)
        if plan.requeue_after is not None:
            self.queue.add_after(key, plan.requeue_after)

    async def _cleanup(
        self, key: Key, spec: WorkflowSpec | None, runs: list[dict[str, Any]], now: datetime
    ) -> None:
        finished = []
        for run in runs:
            status = run.get("status") or {}
            at = parse_timestamp(status.get("finishedAt"))
            if status.get("phase") in TERMINAL_RUN_PHASES and at is not None:
                trigger = (run.get("spec") or {}).get("trigger")
                finished.append(FinishedRun(run["metadata"]["name"], status["phase"], at,
                                            created_by_taskforge=isinstance(trigger, dict)))
        cleanup = plan_cleanup(finished, spec.history if spec else None, now)
        for name in cleanup.delete:
            log.info("deleting run %s/%s (history limits)", key[0], name)
            await asyncio.to_thread(kube.delete_object, kube.RUNS, key[0], name)
        if cleanup.requeue_after is not None:
            self.queue.add_after(key, cleanup.requeue_after)


def _active_run(run: dict[str, Any]) -> ActiveRun:
    trigger = (run.get("spec") or {}).get("trigger") or {}
    return ActiveRun(
        name=run["metadata"]["name"],
        scheduled_time=parse_timestamp(trigger.get("scheduledTime")),
        phase=(run.get("status") or {}).get("phase", "Pending"),
    )


def _run_summary(run: dict[str, Any]) -> dict[str, Any]:
    meta = run.get("metadata") or {}
    status = run.get("status") or {}
    return {
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "created": meta.get("creationTimestamp"),
        "phase": status.get("phase", "Pending"),
    }
