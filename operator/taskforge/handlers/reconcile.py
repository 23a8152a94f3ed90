"""One reconcile of a WorkflowRun: facts -> engine.plan -> actions -> one status write.

Every decision is the engine's; this module only gathers facts from the cache,
carries out the actions the plan names and writes the status it returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from taskforge import logs
from taskforge.adapters import kube, kube_async, metrics
from taskforge.adapters.events import post_event_async
from taskforge.adapters.jobs import RunRef, build_job, observe_job
from taskforge.adapters.patch import merge_patch
from taskforge.api import TERMINAL_RUN_PHASES, WorkflowRunStatus
from taskforge.api.durations import parse_timestamp
from taskforge.engine.actions import (
    CancelRun,
    CreateJob,
    CreateRun,
    DeleteJob,
    EmitEvent,
    Plan,
    StoreResult,
)
from taskforge.engine.facts import RunFacts
from taskforge.engine.health import health_is_current
from taskforge.engine.naming import hashed_job_name
from taskforge.engine.sizes import check_job_size, check_run_size
from taskforge.engine.timing import effective_priority
from taskforge.handlers import children, runlog
from taskforge.handlers.admit import RunAdmitter
from taskforge.handlers.authorization import RunAuthorizer
from taskforge.handlers.config import OperatorConfig
from taskforge.handlers.failures import (
    RunFailures,
    TooLargeError,
    refused_job,
    refused_status,
    ship_backoff,
)
from taskforge.handlers.held import HeldStatuses
from taskforge.handlers.limits import Limits
from taskforge.handlers.planning import BUSY_RETRY_SECONDS, Planner
from taskforge.handlers.queue import WorkQueue
from taskforge.handlers.results import Results
from taskforge.handlers.run_parsing import RunParser
from taskforge.handlers.store import Key, Store

log = logging.getLogger("taskforge.reconcile")
CONFLICT_RETRY_SECONDS = 0.05
RECENT_CREATE_SECONDS = 5.0


def _dump_status(status: WorkflowRunStatus) -> dict[str, Any]:
    """Wire form without unset defaults: a finished 1,000-step run stays under 512 KiB."""
    return status.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True)


def _with_job_names(
    status: WorkflowRunStatus, renamed: dict[tuple[str, int], str]
) -> WorkflowRunStatus:
    """The status with the names the Jobs were actually created under."""
    steps = dict(status.steps or {})
    for (step, attempt), name in renamed.items():
        st = steps.get(step)
        if st is not None and st.attempts == attempt:
            steps[step] = st.model_copy(update={"job_name": name})
    return status.model_copy(update={"steps": steps})


def _parse_time(value: Any) -> datetime:
    return parse_timestamp(value) or datetime.now(UTC)


class RunReconciler(RunFailures):
    def __init__(
        self,
        store: Store,
        queue: WorkQueue[Key],
        config: OperatorConfig,
        on_finished: Any = None,
        limits: Limits | None = None,
        *,
        planner: Planner | None = None,
    ) -> None:
        self.limits = limits or Limits(None)
        # Templates that need real Jinja render in worker processes, off the event loop.
        self.planner = planner or Planner()
        self.results = Results(store)
        self.store = store
        self.authorizer = RunAuthorizer(store)
        self.admitter = RunAdmitter(store, self.limits)
        self.queue = queue
        self.config = config
        self.on_finished = on_finished
        self.ship_backoff = ship_backoff()
        self.parser = RunParser(store)
        # Statuses that only launch steps wait this long for the next change (held.py).
        self.held = HeldStatuses(config.status_coalesce_seconds)
        # Jobs created in the last few seconds: a replan before the watch shows them would
        # otherwise repeat the create and pay a 409 (harmless, but an API write). Keyed by
        # run too: another run's Job may hold the same readable name (see _create_job).
        self._created: dict[tuple[str, str, str], float] = {}
        self._background: set[asyncio.Task[None]] = set()

    def created_recently(self, key: Key, job: str) -> bool:
        """Whether this operator created the run's Job moments ago (its watch echo is no news)."""
        at = self._created.get((key[0], key[1], job))
        return at is not None and time.monotonic() - at < RECENT_CREATE_SECONDS

    def facts(self, key: Key, body: dict[str, Any], now: datetime) -> RunFacts:
        run = self.parser.run(body)
        meta = body.get("metadata") or {}
        workflow = None
        pinned = run.status is not None and run.status.workflow_spec is not None
        if run.spec.workflow_ref is not None and not pinned:
            workflow = self.parser.workflow_facts(key[0], run.spec.workflow_ref.name)
        jobs = tuple(observe_job(job, pods) for job, pods in self.store.jobs_of(key))
        pinned_spec = run.status.workflow_spec if run.status is not None else None
        kids = children.observe_children(self.store, key, str(meta.get("uid", "")),
                                         pinned_spec.all_steps) if pinned_spec else {}
        return RunFacts(
            name=key[1],
            namespace=key[0],
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation") or 1),
            created_at=_parse_time(meta.get("creationTimestamp")),
            spec=run.spec,
            status=run.status,
            workflow=workflow,
            jobs=jobs,
            now=now,
            children=kids,
            lineage=children.lineage_of(body),
            slot_offers=self.limits.take_offers(str(meta.get("uid", ""))),
        )

    async def reconcile(self, key: Key) -> None:
        started = time.perf_counter()
        outcome = "ok"
        workflow = runlog.workflow_of(self.store.run(key) or {})
        with logs.run_fields(namespace=key[0], workflow=workflow, run=key[1]):
            try:
                await self._reconcile(key)
            except Exception as exc:
                outcome = "error"
                metrics.RECONCILE_ERRORS.labels(runlog.reconcile_error_reason(exc)).inc()
                metrics.QUEUE_RETRIES.labels("runs").inc()
                self._retry_later(key, exc)  # exponential backoff per run, and an Event
            else:
                self.queue.forget(key)
            finally:
                metrics.RECONCILES.labels(outcome).inc()
                metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)

    async def _reconcile(self, key: Key) -> None:
        stored = self.store.run(key)
        if stored is None or (stored.get("metadata") or {}).get("deletionTimestamp"):
            self.held.drop(key)
            return
        body = self.held.overlay(key, stored)  # planned from what was decided, held or not
        old_status = body.get("status") or {}
        if (old_status.get("phase") in TERMINAL_RUN_PHASES and not self.store.jobs.get(key)
                and health_is_current((body.get("metadata") or {}).get("generation"), old_status)):
            self.parser.forget(str(body["metadata"].get("uid", "")))
            return
        now = datetime.now(UTC)
        try:
            facts = self.facts(key, body, now)
        except ValidationError as exc:
            await self._write_invalid(key, body, exc, now)
            return
        authorization = await self.authorizer.check(key, body, facts)
        if authorization is not None:
            facts = replace(facts, authorization=authorization)
        if authorization is None or not authorization.denied:  # a refused run takes no token
            gate = await self.admitter.admit(key, facts)
            if gate is not None:
                facts = replace(facts, admission=gate.admission)
                if gate.not_applied is not None:
                    self._post_in_background(body, gate.not_applied, now)
        facts = await self.results.enrich(key, facts)  # large results: logs, ConfigMaps
        result = await self.planner.plan(facts)
        if result is None:  # its templates need the workers, and they are all taken
            self.queue.add_after(key, BUSY_RETRY_SECONDS)
            return
        spec = result.status.workflow_spec
        uid = facts.uid
        if spec is not None and self.limits.enabled:
            result = await self.limits.gate_steps(
                result, spec, namespace=key[0], uid=uid, run_name=key[1], now=now,
                priority=effective_priority(facts.spec.priority, spec.priority,
                                            self.limits.max_priority),
            )
        status, ship_retry = await self.limits.ship(
            result.status, key[0], key[1], runlog.workflow_of(body)
        )
        ship_retry = self._ship_backoff(key, body, ship_retry)
        done = await self._apply_and_write(key, stored, result, status, now,
                                           planned_from=facts.status)
        if done is None:
            return
        status, new_status = done
        runlog.record(key[0], body, facts.status, status, facts.created_at)
        requeue = [t for t in (result.requeue_after, ship_retry) if t is not None]
        if requeue:
            # requeue_after counts from `now`, when the facts were read: the Jobs and the
            # status write since then took time too, so a backoff wakes at its instant.
            took = (datetime.now(UTC) - now).total_seconds()
            self.queue.add_after(key, max(min(requeue) - took, 0.0))
        if self.limits.enabled:
            await self.limits.release_finished(key[0], uid, spec, facts.status, status)
        phase = new_status.get("phase")
        if phase in TERMINAL_RUN_PHASES and old_status.get("phase") != phase:
            if not requeue:  # e.g. a held status's wake-up: a finished run has nothing to wait for
                self.queue.cancel_after(key)
            workflow = runlog.workflow_of(body)
            if workflow and spec is not None and spec.concurrency is not None:
                await self.limits.release_run(key[0], workflow, uid)
            if self.on_finished is not None:
                self.on_finished(key, body, new_status)

    async def _apply_and_write(
        self, key: Key, body: dict[str, Any], result: Plan, status: WorkflowRunStatus,
        now: datetime, *, planned_from: WorkflowRunStatus | None,
    ) -> tuple[WorkflowRunStatus, dict[str, Any]] | None:
        """The plan's actions, then its status, written or held (held.py); None when the
        reconcile ends here (a conflict, or a run that cannot be stored and was failed
        instead). `body` is the run as stored, `planned_from` the status the plan started
        from (the held one, if any)."""
        old_status = body.get("status") or {}
        new_status = _dump_status(status)
        patch = merge_patch(old_status, new_status)
        try:
            # Measured before any Job is created: a status that cannot be stored must not
            # leave Jobs running under a run whose phase never changes (engine/sizes.py).
            oversize = check_run_size(body, new_status) if patch else None
            if oversize is not None:
                raise TooLargeError(oversize)
            renamed = await self._apply(key, body, result, now)
            if renamed:
                status = _with_job_names(status, renamed)
                new_status = _dump_status(status)
                patch = merge_patch(old_status, new_status)
            # A status that only launches steps waits for the next change (handlers/held.py).
            held = self.held.hold_if_allowed(
                key, body, result.actions, planned_from, status, new_status=new_status,
                now=time.monotonic()) if patch else None
            if held is not None:
                if held.new:
                    metrics.STATUS_WRITES_HELD.inc()
                self.queue.add_after(key, held.left)
            else:
                self.held.drop(key)  # written now, or what is stored is right after all
                if patch and await self._write_status(key, body, patch) is None:
                    return None
        except TooLargeError as exc:
            await self._fail_oversize(key, body, exc.oversize, now, status.workflow_spec)
            return None
        return status, new_status

    async def _apply(
        self, key: Key, body: dict[str, Any], result: Plan, now: datetime
    ) -> dict[tuple[str, int], str]:
        """Carry out the plan's actions; the Jobs created under another name than planned."""
        pinned = result.status.workflow_spec
        ref = RunRef(name=key[1], namespace=key[0], uid=str(body["metadata"].get("uid", "")),
                     priority=effective_priority((body.get("spec") or {}).get("priority"),
                                                 pinned.priority if pinned else None,
                                                 self.limits.max_priority))
        renamed: dict[tuple[str, int], str] = {}
        calls: list[Awaitable[object]] = []
        clock = time.monotonic()
        fresh: list[tuple[str, str, str]] = []
        for action in result.actions:
            if isinstance(action, CreateJob):
                job_key = (key[0], key[1], action.job_name)
                if clock - self._created.get(job_key, -1e9) < RECENT_CREATE_SECONDS:
                    # Created moments ago; the watch has not shown it yet. Look again
                    # later in case it never does (the create may not have gone through).
                    self.queue.add_after(key, RECENT_CREATE_SECONDS)
                    continue
                self._created[job_key] = clock
                fresh.append(job_key)
                calls.append(self._create_job(body, ref, action, renamed, now))
            elif isinstance(action, DeleteJob):
                calls.append(asyncio.to_thread(kube.delete_job, key[0], action.job_name))
                metrics.JOBS_DELETED.inc()
            elif isinstance(action, EmitEvent):
                self._post_in_background(body, action, now)
            elif isinstance(action, CreateRun | CancelRun):  # a workflow step's child
                calls.append(children.apply(action, key, ref.uid))
            elif isinstance(action, StoreResult):
                calls.append(self.results.store_one(ref, action))
        if calls:
            try:
                results = await asyncio.gather(*calls)
            except Exception:
                for job_key in fresh:  # a failed create must be retried, not skipped
                    self._created.pop(job_key, None)
                raise
            metrics.JOBS_CREATED.inc(sum(1 for r in results if r is True))
        if len(self._created) > 10_000:
            self._created = {
                k: t for k, t in self._created.items() if t > clock - RECENT_CREATE_SECONDS
            }
        return renamed

    async def _create_job(
        self,
        body: dict[str, Any],
        ref: RunRef,
        action: CreateJob,
        renamed: dict[tuple[str, int], str],
        now: datetime,
    ) -> bool:
        """Create the attempt's Job; under its hashed name when another run's Job has the
        readable one (run `a-b` step `c` and run `a` step `b-c` share `a-b-c-1`)."""
        manifest = build_job(action, ref, self.config.jobs)
        oversize = check_job_size(manifest, action.step, action.attempt)
        if oversize is not None:
            raise TooLargeError(oversize)
        try:
            try:
                return await kube_async.create_job(ref.namespace, manifest)
            except kube.JobNameTakenError as exc:
                if action.item is not None:  # already the hashed form (naming.item_job_name)
                    raise
                other = replace(action, job_name=hashed_job_name(ref.name, action.step,
                                                                 action.attempt))
                self._post_in_background(body, EmitEvent(
                    "Warning", "JobNameTaken", f"{exc}; step {action.step!r} attempt "
                    f"{action.attempt} runs as job {other.job_name} instead", action.step,
                ), now)
                created = await kube_async.create_job(
                    ref.namespace, build_job(other, ref, self.config.jobs)
                )
                renamed[(action.step, action.attempt)] = other.job_name
                return created
        except Exception as exc:
            too_large = refused_job(exc, action)  # JobTooLarge: fails the run, no retry
            if too_large is not None:
                raise too_large from exc
            raise

    def _post_in_background(self, body: dict[str, Any], event: EmitEvent, now: datetime) -> None:
        if (
            not self.config.step_events
            and event.type == "Normal"
            and event.reason.startswith("Step")
        ):
            return

        async def post() -> None:
            try:
                await post_event_async(body, event.type, event.reason, event.message, now)
            except Exception as exc:
                log.warning("could not post event %s: %s", event.reason, exc)

        task = asyncio.get_running_loop().create_task(post())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _write_status(
        self, key: Key, body: dict[str, Any], patch: dict[str, Any]
    ) -> dict[str, Any] | None:
        rv = str(body["metadata"].get("resourceVersion", ""))
        try:
            written = await kube_async.patch_status(
                kube.RUNS,
                key[0],
                key[1],
                {"metadata": {"resourceVersion": rv}, "status": patch},
            )
        except Exception as exc:
            if kube.is_status(exc, 409):
                metrics.STATUS_CONFLICTS.inc()
                self.queue.add_after(key, CONFLICT_RETRY_SECONDS)
                return None
            if kube.is_status(exc, 404):
                return None
            too_large = refused_status(exc)  # StatusTooLarge: fails the run, no retry
            if too_large is not None:
                raise too_large from exc
            raise
        self.store.wrote_run(key, rv, written)
        return written
