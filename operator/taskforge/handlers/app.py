"""The operator's parts, built once at startup and shared by the kopf handlers."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from taskforge.adapters import kube_async, metrics, redis_client
from taskforge.adapters.redis_client import RedisSettings
from taskforge.api import TERMINAL_RUN_PHASES, WorkflowSpec
from taskforge.engine.limits import run_slot_key, step_holder, step_slot_key, waiting_places
from taskforge.engine.webhook import DeliveryAdmission
from taskforge.handlers import admission_server, cache_sync, runlog
from taskforge.handlers.archiver import Archiver
from taskforge.handlers.config import OperatorConfig
from taskforge.handlers.leadership import (
    LeaderElector,
    default_identity,
    is_leader,
    lead_without_election,
    lease_namespace,
)
from taskforge.handlers.limits import Limits
from taskforge.handlers.queue import WorkQueue
from taskforge.handlers.reconcile import RunReconciler
from taskforge.handlers.redis_upkeep import renew_forever, watch_redis
from taskforge.handlers.store import Key, Store
from taskforge.handlers.webhook_limits import webhook_admit, webhook_release
from taskforge.handlers.webhook_server import start_webhook_server
from taskforge.handlers.workflows import WorkflowReconciler

log = logging.getLogger("taskforge.operator")
WORKFLOW_BATCH_SECONDS = 1.0
API_THREADS = 32


def _limits_from_env() -> Limits:
    if not os.environ.get("REDIS_URL"):
        log.info("REDIS_URL is not set: rate limits and concurrency limits are not enforced,"
                 " dead-letter records stay in run status")
        return Limits(None)
    settings = RedisSettings.from_env()
    log.info("redis: %s", settings.describe())
    return Limits(settings)


class Operator:
    def __init__(self, config: OperatorConfig, limits: Limits | None = None) -> None:
        self.config = config
        self.store = Store()
        self.limits = limits if limits is not None else _limits_from_env()
        self.run_queue: WorkQueue[Key] = WorkQueue()
        self.workflow_queue: WorkQueue[Key] = WorkQueue()
        self.runs = RunReconciler(self.store, self.run_queue, config, self._run_finished,
                                  self.limits)
        self.limits.wake = self._wake_runs
        self.workflows = WorkflowReconciler(self.store, self.workflow_queue, self.run_queue,
                                            redis_configured=self.limits.enabled,
                                            redis_outage=self.limits.outage)
        self.tasks: list[asyncio.Task[None]] = []
        self.elector: LeaderElector | None = None
        # The run archive (issue 18), only with TASKFORGE_ARCHIVE_URL; it writes once leading.
        self.archiver = Archiver(config.archive, self.store) if config.archive else None
        self.http: web.AppRunner | None = None
        self.started = False

    def _run_finished(self, key: Key, body: dict[str, Any], status: dict[str, Any]) -> None:
        """A finished run frees a slot: wake the workflow and the runs waiting for it."""
        ref = ((body.get("spec") or {}).get("workflowRef") or {}).get("name")
        if not ref:
            return
        # A short delay folds the status updates of runs that finish together into one write.
        self.workflow_queue.add_after((key[0], ref), WORKFLOW_BATCH_SECONDS)
        workflow = self.store.workflows.get((key[0], ref)) or {}
        if not (workflow.get("spec") or {}).get("concurrency") and not (
                status.get("workflowSpec") or {}).get("concurrency"):
            # No run limit: no run waits for this one's slot. Waking every unstarted run
            # would re-plan each run of a burst once per run that finishes before it starts.
            return
        for run in self.store.unstarted_runs(key[0], ref):
            waiting = (key[0], run["metadata"]["name"])
            if waiting not in self.runs.held:  # a held status has started (handlers/held.py)
                self.run_queue.add(waiting)

    def _wake_runs(self, uids: list[str]) -> None:
        """A step slot was freed: reconcile the runs of the first waiters for it now."""
        for uid in uids:
            key = self.store.run_key(uid)
            if key is not None:
                self.run_queue.add(key)

    def places(self) -> Iterator[tuple[str, str]]:
        """Every waiting step's place in a step key's queue, from the cache (renewed with
        the leases, so a deleted run's place that was missed lapses within a TTL)."""
        for (namespace, _), body in list(self.store.runs.items()):
            status = body.get("status") or {}
            if status.get("phase") in TERMINAL_RUN_PHASES or not status.get("startedAt"):
                continue
            yield from waiting_places(namespace, body["metadata"].get("uid", ""),
                                      status.get("workflowSpec") or {}, status.get("steps") or {})

    def leases(self) -> Iterator[tuple[str, str]]:
        """Every slot lease still in use, from the cache (read by the renewal task)."""
        for (namespace, _), body in list(self.store.runs.items()):
            status = body.get("status") or {}
            if status.get("phase") in TERMINAL_RUN_PHASES or not status.get("startedAt"):
                continue
            spec = status.get("workflowSpec") or {}
            uid = body["metadata"].get("uid", "")
            workflow = ((body.get("spec") or {}).get("workflowRef") or {}).get("name")
            if spec.get("concurrency") and workflow:
                yield run_slot_key(namespace, workflow), uid
            steps = status.get("steps") or {}
            for step in [*spec.get("steps", []), *spec.get("finally", [])]:
                key = (step.get("concurrency") or {}).get("key")
                if key and (steps.get(step["name"]) or {}).get("phase") == "Running":
                    yield step_slot_key(namespace, key), step_holder(uid, step["name"])

    async def forget_run(self, namespace: str, body: dict[str, Any]) -> None:
        """A deleted run gives back its slots at once instead of waiting for them to lapse."""
        uid = body["metadata"].get("uid", "")
        self.runs.parser.forget(uid)
        self.limits.take_offers(uid)  # a slot offered to a deleted run's step: nobody takes it
        if not self.limits.enabled or not is_leader():
            return  # a standby never writes; a new leader's slots lapse if it missed this
        spec = (body.get("status") or {}).get("workflowSpec") or {}
        workflow = ((body.get("spec") or {}).get("workflowRef") or {}).get("name")
        if spec.get("concurrency") and workflow:
            await self.limits.release_run(namespace, workflow, uid)
            self._run_finished((namespace, body["metadata"]["name"]), body, {})
        for step in [*spec.get("steps", []), *spec.get("finally", [])]:
            concurrency = step.get("concurrency") or {}
            if concurrency.get("key"):
                await self.limits.release_step(namespace, concurrency["key"],
                                               step_holder(uid, step["name"]),
                                               int(concurrency.get("maxRunning") or 1))

    def _active_runs(self) -> int:
        return sum(1 for r in self.store.runs.values()
                   if (r.get("status") or {}).get("phase") not in TERMINAL_RUN_PHASES)

    def _unshipped_dead_letters(self) -> int:
        return sum(1 for r in self.store.runs.values()
                   if ((r.get("status") or {}).get("deadLetter") or {}).get("shipped") is False)

    def _gauges(self) -> None:
        """Cache-wide gauges, computed when Prometheus scrapes (in the event loop, where the
        scrape is served): nothing on the hot path, and never stale."""
        metrics.ACTIVE_RUNS.set_function(self._active_runs)
        metrics.DEAD_LETTERS_UNSHIPPED.set_function(self._unshipped_dead_letters)
        for name, queue in (("runs", self.run_queue), ("workflows", self.workflow_queue)):
            metrics.QUEUE_DEPTH.labels(name).set_function(queue.__len__)
            metrics.QUEUE_OLDEST.labels(name).set_function(queue.oldest_wait)
        metrics.configure(workflow_label=self.config.metrics_workflow_label)
        if metrics.observe_redis not in redis_client.OBSERVERS:
            redis_client.OBSERVERS.append(metrics.observe_redis)

    async def readiness(self) -> dict[str, bool]:
        """/readyz: started, the caches synced (every listed object seen), Redis reachable
        (when configured), the admission webhook listening (unless it is off). A standby
        replica is ready too: it serves /hooks and admission reviews."""
        checks = {"started": self.started, "cacheSynced": cache_sync.is_synced()}
        if self.config.admission != "off":
            checks["admission"] = admission_server.is_listening()
        if self.limits.conn is not None:
            checks["redis"] = await self.limits.conn.ping()
        return checks

    def _workflow_spec(self, namespace: str, workflow: str) -> WorkflowSpec | None:
        body = self.store.workflows.get((namespace, workflow))
        if body is None:
            return None
        try:
            return WorkflowSpec.model_validate(body.get("spec") or {})
        except ValidationError:
            return None

    async def admit_delivery(self, namespace: str, workflow: str, run: str) -> DeliveryAdmission:
        spec = self._workflow_spec(namespace, workflow)
        if spec is None:
            return DeliveryAdmission()
        return await webhook_admit(self.limits, namespace, workflow, run, spec)

    async def release_delivery(
        self, namespace: str, workflow: str, run: str, reservation: str
    ) -> None:
        spec = self._workflow_spec(namespace, workflow)
        if spec is not None:
            await webhook_release(self.limits, namespace, workflow, run, reservation, spec=spec)

    def _redis_changed(self, healthy: bool) -> None:
        """Redis went away or came back: the Workflows' LimitsEnforced condition follows."""
        for key in list(self.store.workflows):
            self.workflow_queue.add(key)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # API calls run in threads (the kubernetes client is synchronous); the default pool
        # of cpu+4 threads throttles bursts of Job creates, so give them a pool of their own.
        loop.set_default_executor(ThreadPoolExecutor(API_THREADS, thread_name_prefix="api"))
        self.runs.planner.start()  # template workers load while the caches fill
        if self.limits.enabled:
            self.tasks.append(loop.create_task(watch_redis(self.limits)))
            self.limits.on_health_change(self._redis_changed)
        self._gauges()
        store = self.store
        self.http = await start_webhook_server(
            self.config.http_port,
            lambda ns, name: store.workflows.get((ns, name)),
            admit=self.admit_delivery,
            release=self.release_delivery,
            readiness=self.readiness,
        )
        self.started = True
        if self.config.leader_election:
            self.elector = LeaderElector(
                lease_namespace(self.config.lease_namespace), self.config.lease_name,
                self.config.lease_identity or default_identity(), self.config.lease_timing,
                on_started=self._lead)
            self.tasks.append(loop.create_task(self._campaign(self.elector)))
        else:
            lead_without_election()
            await self._lead()

    async def _campaign(self, elector: LeaderElector) -> None:
        """Stand for leader once the cache is synced: a leader must see everything it owns."""
        synced = asyncio.Event()
        cache_sync.TRACKER.on_synced(synced.set)
        await synced.wait()
        await elector.run()

    async def _lead(self) -> None:
        """This replica acts from now on: start the workers, then catch up on every run and
        Workflow in the cache (a standby's queues hold only what changed while it waited)."""
        loop = asyncio.get_running_loop()
        for _ in range(self.config.workers):
            self.tasks.append(loop.create_task(self.run_queue.worker(self.runs.reconcile)))
        self.tasks.append(loop.create_task(self.workflow_queue.worker(self.workflows.reconcile)))
        if self.limits.enabled:
            self.tasks.append(loop.create_task(
                renew_forever(self.limits, self.leases, self.places)))
        if self.archiver is not None:
            runlog.OBSERVERS.append(self.archiver.after_write)
            runlog.FAILURE_OBSERVERS.append(self.archiver.after_failure)
            self.tasks.append(loop.create_task(self.archiver.run()))
            self.tasks.append(loop.create_task(self.archiver.catch_up()))
        for key in list(self.store.runs):
            self.run_queue.add(key)
        for key in list(self.store.workflows):
            self.workflow_queue.add(key)
        log.info("leading: %d runs and %d workflows queued to catch up",
                 len(self.store.runs), len(self.store.workflows))

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.cleanup()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.elector is not None:  # nothing acts any more: hand the Lease over now
            await self.elector.release()
            self.elector.close()
        self.runs.planner.close()
        await self.limits.close()
        if self.archiver is not None:  # before the session its last log reads go over
            if self.archiver.after_write in runlog.OBSERVERS:
                runlog.OBSERVERS.remove(self.archiver.after_write)
            if self.archiver.after_failure in runlog.FAILURE_OBSERVERS:
                runlog.FAILURE_OBSERVERS.remove(self.archiver.after_failure)
            await self.archiver.close()
        await kube_async.close()
