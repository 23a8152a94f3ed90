"""The leader elector's I/O loop against an in-memory Lease with resourceVersion semantics,
the cache-sync tracker, and the hook into kopf's watch streams."""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import pytest
from taskforge.adapters import lease
from taskforge.engine.election import LeaseRecord, Timing
from taskforge.handlers import cache_sync, leadership
from taskforge.handlers.cache_sync import CacheSync
from taskforge.handlers.leadership import LeaderElector

T = Timing(lease_duration=10.0, renew_deadline=7.0, retry_period=2.0)


def _sync(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in a fresh loop (pytest's fixtures still see its signature)."""
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))
    return run


class FakeLeases:
    """A Lease store as the API server keeps it: a write must carry the current version."""

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.versions = itertools.count(1)
        self.fail = False
        self.hang = 0.0

    def _stored(self, record: LeaseRecord) -> LeaseRecord:
        self.record = replace(record, resource_version=str(next(self.versions)))
        return self.record

    def read(self, namespace: str, name: str, timeout: float) -> LeaseRecord | None:
        if self.fail:
            raise ConnectionError("API server away")
        time.sleep(self.hang)
        return self.record

    def create(self, namespace: str, name: str, record: LeaseRecord,
               timeout: float) -> LeaseRecord | None:
        return None if self.record is not None else self._stored(record)

    def replace(self, namespace: str, name: str, record: LeaseRecord,
                timeout: float) -> LeaseRecord | None:
        if self.record is None or record.resource_version != self.record.resource_version:
            return None
        return self._stored(record)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def leases(monkeypatch: pytest.MonkeyPatch) -> FakeLeases:
    fake = FakeLeases()
    for name in ("read", "create", "replace"):
        monkeypatch.setattr(lease, name, getattr(fake, name))
    monkeypatch.setattr(leadership, "_leading", False)
    return fake


async def _noop() -> None:
    return None


def _elector(identity: str, clock: Clock, timing: Timing = T, **kw: Any) -> LeaderElector:
    return LeaderElector("ns", "lease", identity, timing, on_started=_noop, clock=clock, **kw)


@_sync
async def test_one_leader_then_takeover_after_a_silent_term(leases: FakeLeases) -> None:
    clock = Clock()
    a, b = _elector("a", clock), _elector("b", clock)
    assert await a.try_acquire_or_renew()  # creates it
    assert not await b.try_acquire_or_renew()
    for t in (2.0, 4.0, 6.0, 8.0, 10.0, 12.0):  # a renews every retry period: b never gets it
        clock.now = t
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()
    clock.now = 21.9  # a died at 12: b saw its last renewal at 12
    assert not await b.try_acquire_or_renew()
    clock.now = 22.0
    assert await b.try_acquire_or_renew()
    assert leases.record is not None
    assert (leases.record.holder, leases.record.transitions) == ("b", 1)
    assert not await a.try_acquire_or_renew()  # a (back from a pause) finds b's Lease


@_sync
async def test_two_candidates_racing_for_a_free_lease_one_wins(
    leases: FakeLeases, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    leases._stored(LeaseRecord(None, 1, None, None, 2, None))  # released
    a, b = _elector("a", clock), _elector("b", clock)
    read = leases.read
    seen = read("ns", "lease", 1.0)
    monkeypatch.setattr(lease, "read", lambda *args, **kw: seen)  # both read the same version
    results = [await a.try_acquire_or_renew(), await b.try_acquire_or_renew()]
    assert results == [True, False]
    assert leases.record is not None and leases.record.holder == "a"


@_sync
async def test_release_lets_the_standby_take_over_at_once(leases: FakeLeases) -> None:
    clock = Clock()
    started: list[str] = []
    leading = asyncio.Event()

    async def on_started() -> None:
        started.append("a")
        leading.set()

    a = LeaderElector("ns", "lease", "a", Timing(1.0, 0.5, 0.05), on_started=on_started,
                      clock=clock)
    task = asyncio.create_task(a.run())
    await asyncio.wait_for(leading.wait(), 2.0)
    assert started == ["a"] and leadership.is_leader()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await a.release()
    assert not leadership.is_leader()
    assert leases.record is not None and leases.record.holder is None
    b = _elector("b", clock)
    assert await b.try_acquire_or_renew()  # same instant: no lease term to wait


@_sync
async def test_a_leader_that_cannot_renew_stops_at_its_deadline(leases: FakeLeases) -> None:
    lost, leading = asyncio.Event(), asyncio.Event()

    async def on_started() -> None:
        leading.set()

    a = LeaderElector("ns", "lease", "a", Timing(1.0, 0.3, 0.05), on_started=on_started,
                      on_lost=lost.set)
    task = asyncio.create_task(a.run())
    await asyncio.wait_for(leading.wait(), 2.0)
    leases.fail = True
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(lost.wait(), 2.0)
    took = asyncio.get_running_loop().time() - started
    assert not leadership.is_leader()
    assert 0.2 <= took < 0.6, took  # the renew deadline (0.3 s), give or take a retry
    await asyncio.wait_for(task, 1.0)  # run() returns after on_lost


@_sync
async def test_release_after_a_renewal_it_did_not_see_still_frees_the_lease(
    leases: FakeLeases
) -> None:
    clock = Clock()
    a = _elector("a", clock)
    assert await a.try_acquire_or_renew()
    leadership._set_leading(True)
    assert leases.record is not None
    leases._stored(replace(leases.record, renew_time=None))  # its version moved on
    await a.release()
    assert leases.record is not None and leases.record.holder is None


def test_lease_settings_are_validated_together(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskforge.handlers.config import OperatorConfig, SettingsError  # noqa: PLC0415

    monkeypatch.setenv("TASKFORGE_LEASE_DURATION_SECONDS", "5")
    monkeypatch.setenv("TASKFORGE_LEASE_RENEW_DEADLINE_SECONDS", "6")
    with pytest.raises(SettingsError, match=r"TASKFORGE_LEASE_.*longer than the renew deadline"):
        OperatorConfig.from_env()
    monkeypatch.setenv("TASKFORGE_LEASE_RENEW_DEADLINE_SECONDS", "4")
    monkeypatch.setenv("TASKFORGE_LEASE_NAME", "Not_A_Name")
    with pytest.raises(SettingsError, match="TASKFORGE_LEASE_NAME"):
        OperatorConfig.from_env()
    monkeypatch.setenv("TASKFORGE_LEASE_NAME", "tf")
    config = OperatorConfig.from_env()
    assert (config.lease_name, config.lease_timing) == ("tf", Timing(5.0, 4.0, 1.0))


@_sync
async def test_a_leader_whose_renewal_hangs_stops_at_its_deadline(leases: FakeLeases) -> None:
    """The API server does not answer (no error, no timeout of its own soon enough): the
    leader still stops by its renew deadline, not after its calls' timeouts."""
    lost, leading = asyncio.Event(), asyncio.Event()

    async def on_started() -> None:
        leading.set()

    a = LeaderElector("ns", "lease", "a", Timing(3.0, 0.6, 0.1), on_started=on_started,
                      on_lost=lost.set)
    task = asyncio.create_task(a.run())
    await asyncio.wait_for(leading.wait(), 2.0)
    leases.hang = 1.5  # longer than the deadline, shorter than the calls' own timeout (2 s)
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(lost.wait(), 3.0)
    took = asyncio.get_running_loop().time() - started
    assert took < 0.75, took  # the deadline (0.6 s after the last renewal), not 1.5 s
    await asyncio.wait_for(task, 1.0)


def test_unsafe_timing_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than the renew deadline"):
        LeaderElector("ns", "lease", "a", Timing(5, 5, 1), on_started=_noop)


def test_lease_bodies_round_trip_and_hostile_specs_read_as_free() -> None:
    from datetime import UTC, datetime  # noqa: PLC0415

    at = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
    record = LeaseRecord("a", 10, at, at, 4, "77")
    body = lease.body_of("lease", record)
    assert body["spec"]["renewTime"] == "2026-11-30T12:00:00.123456Z"
    assert body["metadata"]["resourceVersion"] == "77"
    assert lease.record_of(body) == record
    hostile = {"metadata": {"resourceVersion": "1"},
               "spec": {"holderIdentity": "", "leaseDurationSeconds": -5,
                        "leaseTransitions": "many", "renewTime": "yesterday"}}
    assert lease.record_of(hostile) == LeaseRecord(None, None, None, None, 0, "1")


def _listing(tracker: CacheSync, group: str, plural: str, *bodies: dict[str, Any]) -> None:
    tracker.begin(group, plural, None)
    for body in bodies:
        tracker.listed_object(group, plural, body)
    tracker.listed(group, plural, None)


def _obj(uid: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "labels": labels}}


def test_synced_only_when_every_kind_listed_and_every_listed_object_seen() -> None:
    tracker = CacheSync()
    fired: list[bool] = []
    tracker.on_synced(lambda: fired.append(True))
    _listing(tracker, "taskforge.io", "workflowruns", _obj("r1"), _obj("r2"))
    _listing(tracker, "taskforge.io", "workflows", _obj("w1"))
    _listing(tracker, "batch", "jobs", _obj("j1", **{"taskforge.io/run": "r1"}), _obj("x"))
    assert not tracker.synced  # pods not listed yet
    _listing(tracker, "", "pods", _obj("p-other"))  # not ours: never awaited
    tracker.begin("apiextensions.k8s.io", "customresourcedefinitions", None)  # not watched
    for plural, uid in [("workflowruns", "r1"), ("workflows", "w1"), ("jobs", "j1")]:
        tracker.seen(plural, _obj(uid))
        assert not tracker.synced
    tracker.seen("workflowruns", _obj("r2"))  # e.g. its DELETED event
    assert tracker.synced and fired == [True]
    tracker.listed_object("batch", "jobs", _obj("late", **{"taskforge.io/run": "r"}))
    assert tracker.synced and not tracker.pending  # a relist later never un-syncs


def test_kopf_still_has_the_watch_stream_we_hook() -> None:
    """cache_sync wraps kopf's private infinite_watch: a kopf upgrade that moves it fails
    here rather than leaving readiness to a fallback."""
    from kopf._cogs.clients import watching  # noqa: PLC0415
    from kopf._core.reactor import queueing  # noqa: PLC0415

    original = watching.infinite_watch
    tracker = CacheSync()
    try:
        assert cache_sync.install(tracker)
        assert watching.infinite_watch.__wrapped__ is original  # type: ignore[attr-defined]
        assert queueing.watching is watching  # the watcher looks the function up at call time
        assert cache_sync.install(tracker)  # idempotent
        assert watching.infinite_watch.__wrapped__ is original  # type: ignore[attr-defined]
    finally:
        watching.infinite_watch = original


@_sync
async def test_the_hook_passes_events_through_and_notes_the_listing() -> None:
    from kopf._cogs.clients import watching  # noqa: PLC0415

    class Res:
        group, plural = "taskforge.io", "workflows"

    async def stream(**_: Any) -> Any:
        yield {"type": None, "object": _obj("w1")}
        yield watching.Bookmark.LISTED
        yield {"type": "ADDED", "object": _obj("w2")}

    tracker = CacheSync()
    wrapped = cache_sync._wrap(stream, tracker, watching.Bookmark.LISTED)
    events = [e async for e in wrapped(resource=Res(), namespace=None)]
    assert len(events) == 3 and events[1] is watching.Bookmark.LISTED
    assert tracker.streams == {("taskforge.io", "workflows", None): True}
    assert tracker.pending == {("workflows", "w1")}
