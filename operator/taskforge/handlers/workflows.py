"""Workflow housekeeping: the Valid condition, status summary, and run-history cleanup."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from taskforge.adapters import kube
from taskforge.adapters.patch import merge_patch
from taskforge.api import TERMINAL_RUN_PHASES, WorkflowSpec
from taskforge.engine.history import FinishedRun, plan_cleanup
from taskforge.engine.validation import workflow_status
from taskforge.handlers.queue import WorkQueue
from taskforge.handlers.store import Key, Store

log = logging.getLogger("taskforge.workflows")


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None


class WorkflowReconciler:
    def __init__(self, store: Store, queue: WorkQueue[Key], runs: WorkQueue[Key]) -> None:
        self.store = store
        self.queue = queue
        self.runs = runs

    async def reconcile(self, key: Key) -> None:
        try:
            await self._reconcile(key)
        except Exception:
            log.exception("reconcile of workflow %s/%s failed; retrying", *key)
            self.queue.add_after(key, 5.0)

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
        new = workflow_status(
            old_status=old,
            spec=spec,
            spec_error=error,
            generation=int(meta.get("generation") or 1),
            runs=[_run_summary(r) for r in runs],
            now=now,
        )
        patch = merge_patch(old, new)
        if patch:
            try:
                await asyncio.to_thread(kube.patch_status, kube.WORKFLOWS, key[0], key[1],
                                        {"status": patch})
            except Exception as exc:
                if not kube.is_status(exc, 404):
                    raise
        await self._cleanup(key, spec, runs, now)

    async def _cleanup(
        self, key: Key, spec: WorkflowSpec | None, runs: list[dict[str, Any]], now: datetime
    ) -> None:
        finished = []
        for run in runs:
            status = run.get("status") or {}
            at = _time(status.get("finishedAt"))
            if status.get("phase") in TERMINAL_RUN_PHASES and at is not None:
                finished.append(FinishedRun(run["metadata"]["name"], status["phase"], at))
        cleanup = plan_cleanup(finished, spec.history if spec else None, now)
        for name in cleanup.delete:
            log.info("deleting run %s/%s (history limits)", key[0], name)
            await asyncio.to_thread(kube.delete_object, kube.RUNS, key[0], name)
        if cleanup.requeue_after is not None:
            self.queue.add_after(key, cleanup.requeue_after)


def _run_summary(run: dict[str, Any]) -> dict[str, Any]:
    meta = run.get("metadata") or {}
    status = run.get("status") or {}
    return {
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "created": meta.get("creationTimestamp"),
        "phase": status.get("phase", "Pending"),
    }
