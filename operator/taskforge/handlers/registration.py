"""kopf registrations: watch streams feed the cache and the work queues; nothing else.

Handler kinds are chosen for the hot path. Only `@kopf.on.event` is used: it
has no progress storage, no diff-base annotation and no finalizer, so kopf
itself never PATCHes our objects. kopf's change handlers (on.create/update)
would cost one extra PATCH per handler per change, which is most of the
per-step write budget (DESIGN.md: at most 3 API writes per step). State lives
in WorkflowRun.status, written once per reconcile by `reconcile.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from aiohttp import web

from taskforge import GROUP, VERSION
from taskforge.adapters import metrics
from taskforge.adapters.jobs import LABEL_RUN
from taskforge.api import TERMINAL_RUN_PHASES
from taskforge.handlers.config import OperatorConfig
from taskforge.handlers.queue import WorkQueue
from taskforge.handlers.reconcile import RunReconciler
from taskforge.handlers.store import Key, Store
from taskforge.handlers.webhook_server import start_webhook_server
from taskforge.handlers.workflows import WorkflowReconciler

log = logging.getLogger("taskforge.operator")


class Operator:
    """The operator's parts, built once at startup and shared by the handlers."""

    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self.store = Store()
        self.run_queue: WorkQueue[Key] = WorkQueue()
        self.workflow_queue: WorkQueue[Key] = WorkQueue()
        self.runs = RunReconciler(self.store, self.run_queue, config, self._run_finished)
        self.workflows = WorkflowReconciler(self.store, self.workflow_queue, self.run_queue)
        self.tasks: list[asyncio.Task[None]] = []
        self.webhook: web.AppRunner | None = None

    def _run_finished(self, key: Key, body: dict[str, Any], status: dict[str, Any]) -> None:
        ref = ((body.get("spec") or {}).get("workflowRef") or {}).get("name")
        if ref:
            self.workflow_queue.add((key[0], ref))

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.config.workers):
            self.tasks.append(loop.create_task(self.run_queue.worker(self.runs.reconcile)))
        self.tasks.append(loop.create_task(self.workflow_queue.worker(self.workflows.reconcile)))

    async def stop(self) -> None:
        if self.webhook is not None:
            await self.webhook.cleanup()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


OPERATOR: Operator | None = None


def _operator() -> Operator:
    if OPERATOR is None:
        raise RuntimeError("the operator has not started")
    return OPERATOR


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    global OPERATOR  # noqa: PLW0603 - kopf handlers are module-level functions
    config = OperatorConfig.from_env()
    settings.posting.level = logging.WARNING
    settings.peering.standalone = True
    settings.watching.reconnect_backoff = 0.5
    settings.networking.request_timeout = 30
    OPERATOR = Operator(config)
    OPERATOR.start()
    if config.webhook_port:
        store = OPERATOR.store
        OPERATOR.webhook = await start_webhook_server(
            config.webhook_port, lambda ns, name: store.workflows.get((ns, name))
        )
    if config.metrics_port:
        metrics.serve(config.metrics_port)
    log.info("taskforge operator started: executor image %s, %d workers",
             config.jobs.executor_image, config.workers)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if OPERATOR is not None:
        await OPERATOR.stop()


def _raw(event: kopf.RawEvent) -> tuple[bool, dict[str, Any]]:
    return event.get("type") == "DELETED", dict(event.get("object") or {})


def _ns(namespace: str | None) -> str:
    return namespace or "default"


@kopf.on.event(GROUP, VERSION, "workflowruns")
def run_event(event: kopf.RawEvent, namespace: str | None, name: str, **_: Any) -> None:
    op = _operator()
    deleted, body = _raw(event)
    key = (_ns(namespace), name)
    op.store.put_run(key, None if deleted else body)
    if deleted:
        return
    op.run_queue.add(key)
    metrics.ACTIVE_RUNS.set(
        sum(1 for r in op.store.runs.values()
            if (r.get("status") or {}).get("phase") not in TERMINAL_RUN_PHASES)
    )


@kopf.on.event(GROUP, VERSION, "workflows")
def workflow_event(event: kopf.RawEvent, namespace: str | None, name: str, **_: Any) -> None:
    op = _operator()
    deleted, body = _raw(event)
    key = (_ns(namespace), name)
    op.store.put_workflow(key, None if deleted else body)
    if deleted:
        return
    op.workflow_queue.add(key)
    for run in op.store.runs_of_workflow(*key):
        if not (run.get("status") or {}).get("workflowSpec"):
            op.run_queue.add((key[0], run["metadata"]["name"]))


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_RUN: kopf.PRESENT})
def job_event(
    event: kopf.RawEvent, namespace: str | None, name: str, labels: Mapping[str, str], **_: Any
) -> None:
    op = _operator()
    deleted, body = _raw(event)
    run_key = (_ns(namespace), labels[LABEL_RUN])
    op.store.put_job(run_key, name, None if deleted else body)
    op.run_queue.add(run_key)


@kopf.on.event("", "v1", "pods", labels={LABEL_RUN: kopf.PRESENT})
def pod_event(
    event: kopf.RawEvent, namespace: str | None, name: str, labels: Mapping[str, str], **_: Any
) -> None:
    op = _operator()
    deleted, body = _raw(event)
    job = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")
    if not job:
        return
    op.store.put_pod((_ns(namespace), job), name, None if deleted else body)
    op.run_queue.add((_ns(namespace), labels[LABEL_RUN]))
