"""The run archive's writer in the operator: capture at the end of attempts and runs, write
to PostgreSQL in the background (issue 18; docs/archive.md).

Only the leader reconciles, so only the leader calls in here, and only it writes.

Nothing here ever makes a reconcile wait:
  * `after_write` (called once per reconcile that wrote a status) only looks at what changed
    and starts background work: an ended attempt's log is read from its pod at once (the
    reconcile that saw the pod's container terminate, before the Job is even complete), on
    the event loop's aiohttp session, because the Job (and the pod with its log) goes after
    the Job TTL; `after_failure` does the same for a run failed for its size or as invalid;
  * the records go into a bounded in-memory queue that one task drains in batches. When the
    database is away the records wait there and the task retries with backoff (1 s doubling
    to 30 s); they are written when it is back. When the queue is full (ARCHIVE_QUEUE_RECORDS
    records or ARCHIVE_QUEUE_BYTES of logs), a new record is dropped, never waited for: it
    is counted in `taskforge_archive_dropped_total{kind}` and logged (the first, then every
    100th), the way a full work queue must not stall the operator.
  * Retention runs in the same task, every ARCHIVE_RETENTION_INTERVAL seconds.
A new leader also archives the finished runs in its cache that the archive lacks (a
predecessor killed with records in its queue), with the logs their pods still have.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Iterable
from typing import Any

import psycopg
from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter, Gauge

from taskforge.adapters import archive_db, kube
from taskforge.adapters.archive_pods import read_log_tail, read_secret_key
from taskforge.adapters.archive_records import (
    LOG_MAX_BYTES,
    LOG_TAIL_LINES,
    NOT_ENDED,
    Record,
    SecretRef,
    attempt_record,
    executor_log,
    log_record,
    record_bytes,
    redactor,
    run_record,
    run_secret_refs,
    step_secret_refs,
)
from taskforge.adapters.jobs import observe_job
from taskforge.api import TERMINAL_RUN_PHASES, WorkflowRunStatus
from taskforge.engine.facts import ObservedJob
from taskforge.engine.telemetry import RunChanges
from taskforge.handlers.config import ArchiveSettings
from taskforge.handlers.store import Key, Store

log = logging.getLogger("taskforge.archive")

QUEUED = Gauge("taskforge_archive_queue_records", "Archive records waiting to be written.")
WRITTEN = Counter("taskforge_archive_written_total", "Archive records written.", ["kind"])
DROPPED = Counter("taskforge_archive_dropped_total",
                  "Archive records dropped because the queue was full.", ["kind"])
WRITE_ERRORS = Counter("taskforge_archive_write_errors_total",
                       "Failed batch writes to the archive database (retried).")
LOG_READ_ERRORS = Counter("taskforge_archive_log_read_errors_total",
                          "Attempt logs that could not be read from their pod.")
INLINE_LOGS = Counter("taskforge_archive_inline_logs_total",
                     "Attempt logs taken whole from the executor's termination message"
                     " (no read of the pod's log).")
REFUSED = Counter("taskforge_archive_refused_total",
                  "Archive records the database refused for their content (dropped).", ["kind"])
BATCH = 500
BATCH_WAIT = 1.0
"""The writer waits this long after a wake-up, so runs ending together share a transaction
(at 600 single-step runs a minute: ten runs, 30 records, a transaction)."""
LOG_RETRIES = (0.1, 0.3, 0.5, 1.0, 0.0)
"""A pod's log may not be served yet the instant its container ended (the node still
flushing it); tried again after these pauses, well within the Job TTL."""
LOG_READS = 16
"""Log reads at once: a burst of attempts ending together (40 at once in the e2e stress run)
must all be read before a short Job TTL deletes their pods; on the event loop a read waiting
for the API server costs nothing."""


class Archiver:
    def __init__(self, settings: ArchiveSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.queue: collections.deque[Record] = collections.deque()
        self.queued_bytes = 0
        self.dropped = 0
        self.migrated = False
        self._wake = asyncio.Event()
        self._reads = asyncio.Semaphore(LOG_READS)
        self._background: set[asyncio.Task[None]] = set()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._last_retention = 0.0
        QUEUED.set_function(lambda: len(self.queue))

    # ---- capture (event loop, never waits) -------------------------------------------------

    def put(self, records: Iterable[Record]) -> None:
        for record in records:
            size = record_bytes(record)
            if (len(self.queue) >= self.settings.queue_records
                    or self.queued_bytes + size > self.settings.queue_bytes):
                self.dropped += 1
                DROPPED.labels(record[0]).inc()
                if self.dropped % 100 == 1:
                    log.warning("archive queue full (%d records, %d bytes): a %s record was"
                                " dropped (%d so far)", len(self.queue), self.queued_bytes,
                                record[0], self.dropped)
                continue
            self.queue.append(record)
            self.queued_bytes += size
        self._wake.set()

    def after_write(self, namespace: str, body: dict[str, Any], new: WorkflowRunStatus,
                    changes: RunChanges) -> None:
        """A reconcile decided `new`: archive the attempts that ended and a finished run
        (a runlog observer: runs in the reconcile, so it only starts background work)."""
        if not changes.attempts and changes.finished is None:
            return
        # The pinned spec is most of a status: once pinned, the body's (wire) copy is the same
        # spec, so only the rest is dumped (the dump was 1% of the operator's CPU in the bench).
        status = new.model_dump(mode="json", by_alias=True, exclude_none=True,
                                exclude={"workflow_spec"})
        pinned = (body.get("status") or {}).get("workflowSpec")
        if pinned is None and new.workflow_spec is not None:
            pinned = new.workflow_spec.model_dump(mode="json", by_alias=True,
                                                  exclude_unset=True, exclude_none=True)
        if pinned is not None:
            status["workflowSpec"] = pinned
        key = (namespace, str((body.get("metadata") or {}).get("name", "")))
        ended = [(a.step, a.attempt, self._observed(key, a.step, a.attempt))
                 for a in changes.attempts]
        self._spawn(self._capture(key, body, status, ended, changes.finished is not None))

    def after_failure(self, namespace: str, body: dict[str, Any],
                      written: dict[str, Any]) -> None:
        """A run failed outside the plan, for its size or as invalid (handlers/failures.py),
        with `written` its status as stored: archive it and the attempts it had running (a
        runlog failure observer: only starts background work). The minimal status left out
        the steps, spec and params; the archive takes them from the status before."""
        before = body.get("status")
        before = before if isinstance(before, dict) else {}
        status = {**before, **written}
        key = (namespace, str((body.get("metadata") or {}).get("name", "")))
        steps = before.get("steps")
        ended = []
        for step, st in (steps.items() if isinstance(steps, dict) else ()):
            attempt = (st or {}).get("attempts") if isinstance(st, dict) else None
            if isinstance(attempt, int) and attempt > 0 and st.get("phase") in NOT_ENDED:
                ended.append((str(step), attempt, self._observed(key, str(step), attempt)))
        self._spawn(self._capture(key, body, status, ended, True))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _capture(self, key: Key, body: dict[str, Any], status: dict[str, Any],
                       ended: list[tuple[str, int, ObservedJob | None]], finished: bool) -> None:
        uid = str((body.get("metadata") or {}).get("uid", ""))
        spec = status.get("workflowSpec")
        spec = spec if isinstance(spec, dict) else None  # hostile in a run failed as invalid
        try:
            records: list[Record] = []
            for step, attempt, job in ended:
                refs = step_secret_refs(spec, step)
                redact, unreadable = await self._redactor(key[0], refs)
                records.append(attempt_record(uid, step, attempt, status=status, job=job,
                                              redact=redact))
                records.append(await self._log(key, uid, (step, attempt), job, redact=redact,
                                               unreadable=unreadable,
                                               inline=executor_log(spec, step, job)))
            if finished:
                redact, _ = await self._redactor(key[0], run_secret_refs(spec))
                records.append(run_record(body, status, redact))
            self.put(records)
        except Exception:
            log.exception("could not archive run %s/%s", *key)

    async def _redactor(self, namespace: str, refs: set[SecretRef]) -> tuple[Any, str | None]:
        values: list[bytes] = []
        for name, item in sorted(refs):
            try:
                value = await read_secret_key(namespace, name, item)
            except ApiException as exc:
                return redactor(values), f"Secret {name!r} unreadable for redaction ({exc.status})"
            if value is not None:
                values.append(value)
        return redactor(values), None

    def _pod_of(self, key: Key, job_name: str) -> str | None:
        for job, pods in self.store.jobs_of(key):
            if (job.get("metadata") or {}).get("name") == job_name and pods:
                return str((pods[-1].get("metadata") or {}).get("name") or "") or None
        return None

    async def _log(self, key: Key, uid: str, which: tuple[str, int], job: ObservedJob | None,
                   *, redact: Any, unreadable: str | None, inline: str | None) -> Record:
        """The attempt's log record. `inline`: the executor's whole log from its termination
        message, which spares the read through the API server (the archive's main cost)."""
        step, attempt = which
        error: BaseException = RuntimeError("not read")
        pod = self._pod_of(key, job.name) if job is not None else None
        if unreadable is not None:  # never store what could not be redacted
            return log_record(uid, step, attempt, pod=pod, raw=None, redact=redact,
                              note=f"log withheld: {unreadable}")
        if inline is not None:
            INLINE_LOGS.inc()
            return log_record(uid, step, attempt, pod=pod, raw=inline.encode(), redact=redact)
        if pod is None:
            return log_record(uid, step, attempt, pod=None, raw=None, redact=redact,
                              note="no pod: log not captured")
        for delay in LOG_RETRIES:
            try:
                async with self._reads:
                    raw, cut = await read_log_tail(key[0], pod, LOG_MAX_BYTES, LOG_TAIL_LINES)
                return log_record(uid, step, attempt, pod=pod, raw=raw, redact=redact, cut=cut)
            except Exception as exc:
                error = exc
                if kube.is_status(exc, 404):  # the pod is gone, or its node has no log
                    break
                log.info("archive: reading the log of %s#%d (pod %s) failed, retrying: %s",
                         step, attempt, pod, kube.describe(exc))
                await asyncio.sleep(delay)
        LOG_READ_ERRORS.inc()
        log.warning("archive: the log of %s#%d (pod %s) could not be read: %s",
                    step, attempt, pod, kube.describe(error))
        return log_record(uid, step, attempt, pod=pod, raw=None, redact=redact,
                          note=f"log unreadable: {kube.describe(error)}")

    # ---- writing (one background task) ----------------------------------------------------

    async def run(self) -> None:
        """Drain the queue forever; retention now and then; reconnect with backoff."""
        delay = 1.0
        while True:
            try:
                conn = await self._connection()
                await self._retention(conn)
                if len(self.queue) < BATCH:
                    await asyncio.sleep(BATCH_WAIT)  # one transaction for what comes meanwhile
                await self._flush()
                delay = 1.0
                self._wake.clear()
                if not self.queue:
                    await asyncio.wait_for(self._wake.wait(), timeout=min(
                        60.0, self.settings.retention_interval))
            except TimeoutError:
                continue
            except (psycopg.Error, OSError) as exc:
                WRITE_ERRORS.inc()
                log.warning("archive database unavailable (%s); %d records wait, retry in %.0fs",
                            str(exc).strip().splitlines()[0] if str(exc).strip() else
                            type(exc).__name__, len(self.queue), delay)
                await self._close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await archive_db.connect(self.settings.url)
            if not self.migrated:
                applied = await archive_db.migrate(self._conn)
                self.migrated = True
                log.info("archive schema ready (applied migrations: %s)", applied or "none")
        return self._conn

    async def _retention(self, conn: psycopg.AsyncConnection[Any]) -> None:
        policy = self.settings.retention
        now = time.monotonic()
        if not policy.enabled or now - self._last_retention < self.settings.retention_interval:
            return
        deleted = await archive_db.enforce_retention(conn, policy)
        self._last_retention = now
        if deleted:
            log.info("archive retention deleted %d runs", deleted)

    async def catch_up(self) -> None:
        """Archive the finished runs in the cache that the archive lacks (leader start)."""
        finished = {str(b["metadata"].get("uid", "")): (key, b)
                    for key, b in list(self.store.runs.items())
                    if (b.get("status") or {}).get("phase") in TERMINAL_RUN_PHASES}
        if not finished:
            return
        for _ in range(30):
            try:
                conn = await self._connection()
                have = await archive_db.archived_uids(conn, list(finished))
                break
            except (psycopg.Error, OSError):
                await self._close()
                await asyncio.sleep(2.0)
        else:
            return
        for uid, (key, body) in finished.items():
            if uid in have:
                continue
            status = body.get("status") or {}
            ended = [(name, attempt, self._observed(key, name, attempt))
                     for name, st in (status.get("steps") or {}).items()
                     for attempt in range(1, int(st.get("attempts") or 0) + 1)]
            await self._capture(key, body, status, ended, True)
        log.info("archive catch-up: %d finished runs checked, %d archived now",
                 len(finished), len(finished) - len(have))

    def _observed(self, key: Key, step: str, attempt: int) -> ObservedJob | None:
        for job, pods in self.store.jobs_of(key):
            labels = (job.get("metadata") or {}).get("labels") or {}
            if (labels.get("taskforge.io/step") == step
                    and labels.get("taskforge.io/attempt") == str(attempt)):
                return observe_job(job, pods)
        return None

    async def _close(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close()
            except Exception:
                log.debug("archive: closing the connection failed", exc_info=True)
            self._conn = None

    async def close(self, grace: float = 5.0) -> None:
        """Stopping: let captures under way finish and write what is queued, within `grace`
        seconds (a rolling update must not drop the last runs); then give up."""
        deadline = asyncio.get_running_loop().time() + grace
        if self._background:
            await asyncio.wait(list(self._background), timeout=grace)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._close()  # the writer task was cancelled, perhaps inside a transaction
        try:
            left = max(0.1, deadline - asyncio.get_running_loop().time())
            await asyncio.wait_for(self._flush(), timeout=left)
        except (TimeoutError, psycopg.Error, OSError) as exc:
            log.warning("archive: %d records not written at shutdown (%s)", len(self.queue),
                        type(exc).__name__)
        await self._close()

    async def _flush(self) -> None:
        if not self.queue:
            return
        conn = await self._connection()
        while self.queue:
            batch = [self.queue[i] for i in range(min(BATCH, len(self.queue)))]
            refused: list[tuple[Record, str]] = []
            try:
                await archive_db.write(conn, batch)
            except archive_db.REFUSED:
                # A value the database cannot store (never an outage): written one by one,
                # so one hostile record is dropped and counted, not retried forever while
                # the queue fills behind it.
                refused = await archive_db.write_each(conn, batch)
            for record, why in refused:
                REFUSED.labels(record[0]).inc()
                values = record[1]
                log.warning("archive: the database refused a %s record of run %s (%s): %s",
                            record[0], values.get("uid") or values.get("run_uid"),
                            values.get("step") or values.get("name"), why)
            dropped = {id(r) for r, _ in refused}
            for _ in batch:
                record = self.queue.popleft()
                self.queued_bytes -= record_bytes(record)
                if id(record) not in dropped:
                    WRITTEN.labels(record[0]).inc()

