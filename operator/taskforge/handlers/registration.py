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
import gc
import importlib
import json
import logging
import threading
from collections.abc import Mapping
from typing import Any, cast

import kopf

from taskforge import GROUP, VERSION
from taskforge.adapters import fastjson
from taskforge.adapters.jobs import LABEL_RUN
from taskforge.api.run import TERMINAL_RUN_PHASES
from taskforge.handlers import admission, cache_sync, children
from taskforge.handlers.app import Operator
from taskforge.handlers.config import OperatorConfig

log = logging.getLogger("taskforge.operator")


OPERATOR: Operator | None = None
_background: set[asyncio.Task[None]] = set()


def _operator() -> Operator:
    if OPERATOR is None:
        raise RuntimeError("the operator has not started")
    return OPERATOR


class NoDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff-base, turned off: it is only read by change handlers, which we have none of.

    kopf builds it for every watch event anyway, by deep-copying the whole body (a run's
    status with its pinned spec included) only to drop most of it again: the largest CPU
    cost of the operator in profiles, above our own reconcile. An empty essence and no
    stored base make that free. A change or daemon handler added later would need it back.
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Any = None
    ) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None


def select_step_objects(settings: kopf.OperatorSettings) -> None:
    """Jobs and pods are selected by the run label on the server, not only in our handlers.

    The handlers' `labels=` filter is client-side: without this, the API server sends every
    pod and Job of the cluster (every status change of every pod), and kopf decodes each one
    and runs its per-event machinery only to drop it. On a busy cluster that is most of the
    operator's CPU; `taskforge_watch_events_total{resource="pods"}` shows what still arrives.
    """
    for group, version, plural in (("batch", "v1", "jobs"), ("", "v1", "pods")):
        settings.watching.label_selectors[group, version, plural] = LABEL_RUN


def decode_watch_events_fast() -> bool:
    """kopf's watch streams decoded with orjson (adapters/fastjson.py says why).

    kopf decodes each watch line with `json.loads` in `kopf._cogs.clients.api.stream` and has
    no setting for it, so its module's `json` is replaced; False (and the stdlib) if a kopf
    upgrade moved it. `tests/unit/test_watch_selectors.py` fails then.
    """
    try:
        from kopf._cogs.clients import api  # noqa: PLC0415 - private, see the docstring
    except ImportError:
        return False
    current = getattr(api, "json", None)
    if isinstance(current, fastjson.JsonModule):
        return True
    if current is not json:
        return False
    api.json = fastjson.JsonModule()  # type: ignore[attr-defined,assignment]
    return True


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    global OPERATOR  # noqa: PLW0603 - kopf handlers are module-level functions
    config = OperatorConfig.from_env()
    settings.posting.level = logging.WARNING
    # kopf logs "Handler ... succeeded" for every watch event: a tenth of the loop's time.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    settings.peering.standalone = True
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.watching.reconnect_backoff = 0.5
    select_step_objects(settings)
    settings.networking.request_timeout = 30
    admission.configure(settings, config)
    if not cache_sync.install(direct=DIRECT):  # before kopf's watchers start (after startup)
        cache_sync.TRACKER.force("this kopf version has no watch stream to hook")
    if not decode_watch_events_fast():
        log.warning("kopf's watch streams decode with the stdlib: no `json` in kopf's api module")
    OPERATOR = Operator(config)
    await OPERATOR.start()
    gc.freeze()  # the startup objects live forever: keep full collections short
    # The kubernetes client imports CoreV1Api on first use: ~0.6 s of CPU under the import
    # lock, which a run's first Secret or result-log read would otherwise pay in its reconcile
    # (and the event loop, for the GIL). Paid now, beside the watches' first lists.
    threading.Thread(target=importlib.import_module, args=("kubernetes.client.api.core_v1_api",),
                     name="warm-imports", daemon=True).start()
    log.info("taskforge operator started: executor image %s, %d workers",
             config.jobs.executor_image, config.workers)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if OPERATOR is not None:
        await OPERATOR.stop()
        if OPERATOR.config.admission == "local" and not await admission.served_elsewhere(
                OPERATOR.config.admission_port):
            await asyncio.to_thread(admission.remove_managed_configuration)


def _raw(event: Mapping[str, Any]) -> tuple[bool, dict[str, Any], str, str, Mapping[str, str]]:
    """(deleted, body, namespace, name, labels) of a raw watch event."""
    body = dict(event.get("object") or {})
    meta = body.get("metadata") or {}
    return (event.get("type") == "DELETED", body, meta.get("namespace") or "default",
            str(meta.get("name") or ""), meta.get("labels") or {})


# The handlers take kopf's raw watch events. They are called straight from kopf's watch
# stream (cache_sync.install(direct=DIRECT)), not through kopf's per-event machinery: a
# worker task per object, cause detection, handler kwargs, a logger per object and event,
# progress bookkeeping. That was a quarter of the operator's CPU per step (issue 14) and
# serves us nothing: these handlers only update the cache and the work queues, in order,
# and never fail. The kopf.on.event registrations below stay: they make kopf open the watch
# streams, and they call the same functions if the hook cannot be installed.

def on_run(event: Mapping[str, Any]) -> None:
    op = _operator()
    deleted, body, namespace, name, _ = _raw(event)
    cache_sync.TRACKER.seen("workflowruns", body)
    key = (namespace, name)
    own = not deleted and op.store.own_write(key, body)
    op.store.put_run(key, None if deleted else body)
    if deleted:
        task = asyncio.get_running_loop().create_task(op.forget_run(key[0], body))
        _background.add(task)
        task.add_done_callback(_background.discard)
        if (parent := children.parent_of(body)) is not None:
            op.run_queue.add((key[0], parent))  # its workflow step must learn the child is gone
        return
    if not own:  # the echo of our own status write: the reconcile that wrote it knew it all
        op.run_queue.add(key)
    parent = children.parent_of(body)
    if parent is not None and (body.get("status") or {}).get("phase") in TERMINAL_RUN_PHASES:
        op.run_queue.add((key[0], parent))  # a workflow step ends with its child run


def on_workflow(event: Mapping[str, Any]) -> None:
    op = _operator()
    deleted, body, namespace, name, _ = _raw(event)
    cache_sync.TRACKER.seen("workflows", body)
    key = (namespace, name)
    own = not deleted and op.store.own_workflow_write(key, body)
    op.store.put_workflow(key, None if deleted else body)
    if deleted or own:  # the echo of our own status write changes nothing we read
        return
    op.workflow_queue.add(key)
    for run in op.store.unpinned_runs(*key):
        unpinned = (key[0], run["metadata"]["name"])
        if unpinned not in op.runs.held:  # a held status has pinned (handlers/held.py)
            op.run_queue.add(unpinned)


def on_job(event: Mapping[str, Any]) -> None:
    deleted, body, namespace, name, labels = _raw(event)
    if LABEL_RUN not in labels:
        return  # the server-side selector already keeps these out
    op = _operator()
    cache_sync.TRACKER.seen("jobs", body)
    run_key = (namespace, labels[LABEL_RUN])
    if not op.store.put_job(run_key, name, None if deleted else body):
        return  # nothing the engine reads changed
    if not deleted and op.store.only_active(namespace, name) and op.runs.created_recently(
            run_key, name):
        return  # our own create's echo: the plan that made it already counts it as running
    op.run_queue.add(run_key)


def on_pod(event: Mapping[str, Any]) -> None:
    deleted, body, namespace, name, labels = _raw(event)
    job = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")
    if LABEL_RUN not in labels or not job:
        return
    op = _operator()
    cache_sync.TRACKER.seen("pods", body)
    run_key = (namespace, labels[LABEL_RUN])
    if op.store.put_pod((namespace, job), name, None if deleted else body, run_key):
        op.run_queue.add(run_key)


DIRECT: cache_sync.Direct = {
    (GROUP, "workflowruns"): on_run,
    (GROUP, "workflows"): on_workflow,
    ("batch", "jobs"): on_job,
    ("", "pods"): on_pod,
}


@kopf.on.event(GROUP, VERSION, "workflowruns")
async def run_event(event: kopf.RawEvent, **_: Any) -> None:
    on_run(event)


@kopf.on.event(GROUP, VERSION, "workflows")
async def workflow_event(event: kopf.RawEvent, **_: Any) -> None:
    on_workflow(event)


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_RUN: kopf.PRESENT})
async def job_event(event: kopf.RawEvent, **_: Any) -> None:
    on_job(event)


@kopf.on.event("", "v1", "pods", labels={LABEL_RUN: kopf.PRESENT})
async def pod_event(event: kopf.RawEvent, **_: Any) -> None:
    on_pod(event)
