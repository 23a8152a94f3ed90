"""Leader election: two replicas, one Lease, only the leader acts.

Every replica watches (its cache stays warm), serves `/hooks` and the admission webhooks.
Only the leader runs the work queues' workers: reconciles runs, schedules cron runs, ships
dead letters, renews concurrency slots. A standby's events only fill its cache and queue
keys nobody works on; when it becomes leader it starts the workers and enqueues every run
and Workflow it knows (catch-up), so nothing that happened while it stood by is missed.

A leader that cannot renew within the renew deadline exits the process at once (as
controller-runtime does): whatever it was doing stops, and the restarted process stands by
with a fresh cache. On a clean stop the leader releases the Lease (empty holder), so the
standby takes over at its next retry instead of after a whole lease term.

Why not a library:
* `kubernetes.leaderelection` (the installed client) runs its loop in a thread that blocks in
  `acquire()` with no way to stop it, never releases the Lease on shutdown (every rolling
  update would then wait a lease term), validates its config with `sys.exit`, swallows API
  errors, and converts times through naive local strings.
* `kubernetes_asyncio.leaderelection` would bring a second Kubernetes client library (its
  own config loading and connection pool) into the operator for ~100 lines of logic.
* kopf's peering is not a Lease (it uses its own KopfPeering resources and pauses watching
  on the standby, which would also leave the standby's cache cold).
So the decisions are client-go's rules as pure functions (`engine/election.py`, table tests)
and this module only does the I/O and keeps time. Lease calls run in a thread of their own,
so a burst of Job creates in the shared API pool never delays a renewal.

`is_leader()` and `is_ready()` are the hooks for /readyz and the `taskforge_leader` gauge.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

from taskforge.adapters import lease, metrics
from taskforge.engine.election import (
    LeaseRecord,
    Observed,
    Timing,
    Verdict,
    decide,
    desired,
    observe,
    released,
    still_leading,
)
from taskforge.handlers import cache_sync

log = logging.getLogger("taskforge.leadership")
T = TypeVar("T")

_leading = False


def is_leader() -> bool:
    """Whether this replica acts now (holds the Lease, or runs without leader election)."""
    return _leading


def is_ready() -> bool:
    """Readiness: the cache is synced (every watched kind listed and handed to the handlers).
    A standby is ready too: it serves webhooks and admission, and takes over when needed."""
    return cache_sync.is_synced()


def _set_leading(value: bool) -> None:
    global _leading  # noqa: PLW0603 - one process, one leadership state
    _leading = value
    metrics.LEADER.set(1 if value else 0)


def default_identity() -> str:
    """The host (the pod's name in a cluster) and a random suffix, so two processes on one
    host never share an identity: each would take the other's Lease for its own."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def lease_namespace(configured: str) -> str:
    """The Lease's namespace: configured, else the pod's own, else `default`."""
    if configured:
        return configured
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


def exit_now() -> None:
    """Leadership lost: stop acting at once. The process exits (the pod restarts it as a
    standby); no cleanup runs, since it must not write anything any more."""
    log.critical("leader election lost: exiting so that nothing acts without the Lease")
    logging.shutdown()
    sys.stderr.flush()
    os._exit(1)


class LeaderElector:
    def __init__(
        self,
        namespace: str,
        name: str,
        identity: str,
        timing: Timing,
        *,
        on_started: Callable[[], Awaitable[None]],
        on_lost: Callable[[], None] = exit_now,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        problem = timing.problem()
        if problem is not None:
            raise ValueError(f"leader election: {problem}")
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing
        self.on_started = on_started
        self.on_lost = on_lost
        self.clock = clock
        self.observed: Observed | None = None
        self.record: LeaseRecord | None = None
        self.last_renewed = 0.0
        self.holder: str | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="lease")
        self._timeout = max(0.5, timing.renew_deadline / 3)

    @property
    def leading(self) -> bool:
        return _leading

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(self._executor, partial(fn, *args, timeout=self._timeout))
        return await asyncio.wait_for(call, self._timeout + 0.5)

    async def try_acquire_or_renew(self) -> bool:
        """One round: read the Lease, decide, write it if ours to write. True if we hold it."""
        record = await self._call(lease.read, self.namespace, self.name)
        now = self.clock()
        self.observed = observe(self.observed, record, now)
        verdict = decide(record, self.identity, self.observed, now, self.timing)
        if verdict is Verdict.WAIT:
            if record is not None and record.holder != self.holder:
                self.holder = record.holder
                log.info("lease %s/%s is held by %s", self.namespace, self.name, record.holder)
            return False
        new = desired(record, self.identity, verdict, datetime.now(UTC), self.timing)
        if verdict is Verdict.CREATE:
            written = await self._call(lease.create, self.namespace, self.name, new)
        else:
            written = await self._call(lease.replace, self.namespace, self.name, new)
        if written is None:  # another candidate wrote first (409)
            return False
        self.record = written
        self.holder = written.holder
        self.observed = observe(self.observed, written, self.clock())
        return True

    async def run(self) -> None:
        """Campaign forever (after the cache synced); call on_lost when leadership ends."""
        log.info("leader election: %s campaigns for lease %s/%s", self.identity,
                 self.namespace, self.name)
        while True:
            # A leader's round may not outlast its renew deadline: it must stop acting then,
            # however long the API server takes to answer.
            budget = (self.last_renewed + self.timing.renew_deadline - self.clock()
                      if self.leading else None)
            try:
                ok = await asyncio.wait_for(self.try_acquire_or_renew(),
                                            None if budget is None else max(0.05, budget))
            except Exception as exc:  # the API server away, a timeout: retry, but mind time
                log.warning("lease %s/%s: %s", self.namespace, self.name,
                            str(exc) or type(exc).__name__)
                ok = False
            now = self.clock()
            if ok:
                self.last_renewed = now
                if not self.leading:
                    _set_leading(True)
                    log.info("leader election: %s leads (lease %s/%s)", self.identity,
                             self.namespace, self.name)
                    await self.on_started()
            elif self.leading and not still_leading(self.last_renewed, now, self.timing):
                _set_leading(False)
                self.on_lost()
                return
            jitter = 1.0 if self.leading else random.uniform(1.0, 1.2)
            await asyncio.sleep(self.timing.retry_period * jitter)

    async def release(self) -> None:
        """Clean stop: give the Lease up (empty holder), so a standby takes it at once."""
        record = self.record
        if not self.leading or record is None:
            return
        _set_leading(False)
        try:
            written = await self._call(lease.replace, self.namespace, self.name,
                                       released(record, datetime.now(UTC)))
            if written is None:  # a renewal cut short by the stop wrote a newer version
                current = await self._call(lease.read, self.namespace, self.name)
                if current is not None and current.holder == self.identity:
                    written = await self._call(lease.replace, self.namespace, self.name,
                                               released(current, datetime.now(UTC)))
        except Exception as exc:
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, exc)
            return
        if written is not None:
            log.info("leader election: %s released lease %s/%s", self.identity,
                     self.namespace, self.name)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def lead_without_election() -> None:
    """Leader election off (one replica by design): this replica acts from the start."""
    _set_leading(True)
