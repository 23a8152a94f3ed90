"""The run reconciler's failure paths against a fake API server (handlers/failures.py).

A write the API server refuses for its size fails the run at once, in a minimal status, and
is never retried; any other error is retried with a growing delay and reported by an Event
at a falling rate. The e2e suite (tests/e2e/security/test_sizes.py) shows the same against
a real API server; here each refusal can be produced exactly.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from taskforge.adapters import kube, kube_async
from taskforge.handlers import reconcile as reconcile_module
from taskforge.handlers.config import OperatorConfig
from taskforge.handlers.queue import WorkQueue
from taskforge.handlers.reconcile import RunReconciler
from taskforge.handlers.store import Key, Store

KEY: Key = ("ns", "big")
TOO_LARGE = (500, "Internal Server Error", "etcdserver: request is too large")
GRPC_TOO_LARGE = (
    500,
    "Internal Server Error",
    "rpc error: code = ResourceExhausted desc = trying to send message larger than max"
    " (2167859 vs. 2097152)",
)
ENTITY_TOO_LARGE = (413, "Request Entity Too Large", "Request entity too large: limit is 3145728")
# What a real API server (1.36) answers for a Job over etcd's limit: see handlers/failures.py.
JOB_RETRY_QUIRK = (
    422,
    "Unprocessable Entity",
    'Job.batch "big-s0-1" is invalid: [spec.template.metadata.labels[controller-uid]: Invalid'
    " value: ..., spec.selector: Invalid value: {...}: `selector` not auto-generated]",
)


def api_error(status: int, reason: str, message: str) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps({"kind": "Status", "message": message, "code": status})
    return exc


def apply_merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = apply_merge_patch(out[k], v)
        else:
            out[k] = v
    return out


class FakeApi:
    """Just enough of the API server: one run, its status writes, Job creates, Events."""

    def __init__(self, store: Store, body: dict[str, Any]) -> None:
        self.store = store
        self.body = body
        self.patches: list[dict[str, Any]] = []
        self.jobs: list[str] = []
        self.deleted: list[str] = []
        self.events: list[tuple[str, str, str]] = []
        self.refuse_status: Callable[[dict[str, Any]], ApiException | None] = lambda p: None
        self.refuse_job: ApiException | None = None
        store.put_run(KEY, copy.deepcopy(body))

    def patch_status(self, plural: str, ns: str, name: str, patch: dict[str, Any]) -> Any:
        status = patch["status"]
        refusal = self.refuse_status(status)
        if refusal is not None:
            raise refusal
        self.patches.append(status)
        self.body = apply_merge_patch(self.body, {"status": status})
        meta = self.body["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        self.store.put_run(KEY, copy.deepcopy(self.body))  # the watch catches up at once
        return copy.deepcopy(self.body)

    def create_job(self, ns: str, manifest: dict[str, Any]) -> bool:
        if self.refuse_job is not None:
            raise self.refuse_job
        name = manifest["metadata"]["name"]
        self.jobs.append(name)
        self.store.put_job(KEY, name, {"metadata": manifest["metadata"], "status": {}})
        return True

    def delete_job(self, ns: str, name: str) -> None:
        self.deleted.append(name)

    def post_event(self, body: Any, type_: str, reason: str, message: str, now: Any) -> None:
        self.events.append((type_, reason, message))

    @property
    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]


def run_body(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "taskforge.io/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {
            "name": KEY[1], "namespace": KEY[0], "uid": "uid-1", "generation": 1,
            "resourceVersion": "1", "creationTimestamp": "2026-11-30T12:00:00Z",
        },
        "spec": {"workflowSpec": {"steps": steps}},
    }


LOG_STEPS = [{"name": f"s{i}", "log": {"message": "hi"}} for i in range(3)]


def _in_loop(fn: Callable[..., Any]) -> Callable[..., Any]:
    async def call(*args: Any) -> Any:
        return fn(*args)
    return call


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[list[dict[str, Any]]], Any]]:
    def make(steps: list[dict[str, Any]]) -> tuple[FakeApi, RunReconciler]:
        store = Store()
        api = FakeApi(store, run_body(steps))
        monkeypatch.setattr(kube, "patch_status", api.patch_status)
        monkeypatch.setattr(kube, "create_job", api.create_job)
        monkeypatch.setattr(kube, "delete_job", api.delete_job)
        # the hot path's calls run on the event loop (adapters/kube_async.py)
        monkeypatch.setattr(kube_async, "patch_status", _in_loop(api.patch_status))
        monkeypatch.setattr(kube_async, "create_job", _in_loop(api.create_job))
        monkeypatch.setattr(reconcile_module, "post_event_async", _in_loop(api.post_event))
        # Every status is written at once: these tests are about the write's failures, and a
        # launch held for the coalescing window (handlers/held.py) would not be written yet.
        config = OperatorConfig(status_coalesce_seconds=0)
        return api, RunReconciler(store, RecordingQueue(), config)

    yield make


async def settle() -> None:
    await asyncio.sleep(0.05)  # background Event posts


class RecordingQueue(WorkQueue[Key]):
    """Records delayed adds (requeues and retries) instead of scheduling them."""

    def __init__(self) -> None:
        super().__init__()
        self.delayed: list[float] = []

    def add_after(self, key: Key, delay: float) -> None:
        self.delayed.append(delay)


def pending_retry(reconciler: RunReconciler) -> bool:
    queue = reconciler.queue
    assert isinstance(queue, RecordingQueue)
    return bool(queue.delayed)


@pytest.mark.parametrize("refusal", [TOO_LARGE, GRPC_TOO_LARGE, ENTITY_TOO_LARGE],
                         ids=["etcd", "grpc", "413"])
def test_a_status_refused_as_too_large_fails_the_run_in_a_minimal_status(
    world: Callable[..., tuple[FakeApi, RunReconciler]], refusal: tuple[int, str, str]
) -> None:
    api, reconciler = world(LOG_STEPS)
    # Every write that carries the pinned spec is refused, as for a spec the CRD cannot bound.
    api.refuse_status = lambda status: api_error(*refusal) if "workflowSpec" in status else None

    async def scenario() -> None:
        await reconciler.reconcile(KEY)
        await settle()
        assert not pending_retry(reconciler)
        # The run is terminal now; the next reconcile deletes what the first one launched.
        await reconciler.reconcile(KEY)

    asyncio.run(scenario())
    (patch,) = api.patches
    assert patch["phase"] == "Failed"
    (cond,) = [c for c in patch["conditions"] if c["type"] == "Succeeded"]
    assert (cond["status"], cond["reason"]) == ("False", "StatusTooLarge")
    assert refusal[2] in cond["message"]
    assert "workflowSpec" not in api.body["status"] and "steps" not in api.body["status"]
    assert sorted(api.deleted) == sorted(api.jobs)  # Jobs launched by the refused reconcile
    assert api.reasons.count("StatusTooLarge") == 1
    assert "ReconcileError" not in api.reasons
    assert reconciler.queue.failures(KEY) == 0


@pytest.mark.parametrize("refusal", [ENTITY_TOO_LARGE, TOO_LARGE, JOB_RETRY_QUIRK],
                         ids=["413", "etcd", "422-selector"])
def test_a_job_refused_as_too_large_fails_the_run_naming_the_step(
    world: Callable[..., tuple[FakeApi, RunReconciler]], refusal: tuple[int, str, str]
) -> None:
    api, reconciler = world(LOG_STEPS[:1])
    api.refuse_job = api_error(*refusal)

    async def scenario() -> None:
        await reconciler.reconcile(KEY)
        await settle()
        assert not pending_retry(reconciler)

    asyncio.run(scenario())
    (patch,) = api.patches
    assert patch["phase"] == "Failed"
    assert patch["conditions"][-1]["reason"] == "JobTooLarge"
    assert "step 's0' (attempt 1) was refused as too large" in patch["message"]
    assert api.reasons.count("JobTooLarge") == 1
    assert "ReconcileError" not in api.reasons


def test_a_status_that_cannot_fit_fails_the_run_before_any_job_is_created(
    world: Callable[..., tuple[FakeApi, RunReconciler]],
) -> None:
    # 0.8 MB of untyped JSON: the CRD cannot cap it, and pinned into status it would make
    # the run 1.6 MB. The old operator created the Job, then failed every status write.
    big = [{"name": "post", "http": {"url": "https://x.io", "json": {"b": "x" * 800_000}}}]
    api, reconciler = world(big)

    asyncio.run(reconciler.reconcile(KEY))
    assert api.jobs == []
    (patch,) = api.patches
    assert patch["conditions"][-1]["reason"] == "StatusTooLarge"
    assert "more than the 1.40 MiB the API server can store" in patch["message"]
    assert "spec.workflowSpec 781 KiB" in patch["message"]
    assert not pending_retry(reconciler)


def test_other_errors_back_off_per_run_and_are_reported_at_a_falling_rate(
    world: Callable[..., tuple[FakeApi, RunReconciler]],
) -> None:
    api, reconciler = world(LOG_STEPS[:1])
    # 422 too, but not about size: retried (with backoff), never failed as JobTooLarge
    api.refuse_job = api_error(422, "Unprocessable Entity", "etcd is away: spec.x: Invalid value")
    queue = reconciler.queue
    assert isinstance(queue, RecordingQueue)

    async def scenario() -> None:
        for _ in range(5):
            await reconciler.reconcile(KEY)
        await settle()
        api.refuse_job = None  # the API server is back: a success resets the backoff
        await reconciler.reconcile(KEY)

    asyncio.run(scenario())
    assert queue.delayed[:5] == [0.5, 1.0, 2.0, 4.0, 8.0]  # the old code: 2.0 every time
    events = [m for _, r, m in api.events if r == "ReconcileError"]
    assert len(events) == 3  # failures 1, 2 and 4
    assert events[0].startswith("reconcile failed once, next try in 0.5s: 422")
    assert "etcd is away" in events[0]
    assert events[2].startswith("reconcile failed 4 times in a row")
    assert api.patches and api.patches[-1]["phase"] == "Running"
    assert reconciler.queue.failures(KEY) == 0
