"""Before a plan: read the logs of finished attempts with large results, and load the stored
results the plan's templates read. After it: store the results it recorded.

Everything here runs in threads (`asyncio.to_thread`): a 1 MiB log or ConfigMap never blocks
the event loop. The engine decides what to read and what to store (engine/stored.py);
this module only does it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from typing import Any

from kubernetes.client.exceptions import ApiException

from taskforge.adapters import kube
from taskforge.adapters.jobs import RunRef
from taskforge.adapters.results import (
    ResultCache,
    ResultLogError,
    ResultReadError,
    load_result,
    read_result_log,
    store_result,
)
from taskforge.api.run import StoredResult
from taskforge.engine.actions import StoreResult
from taskforge.engine.dag import DagError, build_cached
from taskforge.engine.facts import LoadedResult, ObservedJob, RunFacts
from taskforge.engine.stored import log_wanted, wanted_results, with_log
from taskforge.handlers.store import Key, Store

log = logging.getLogger("taskforge.results")

LOAD_BYTES_PER_PLAN = 16 * 1024 * 1024
"""Stored results one plan may load (parsed, they take several times this in memory): a
step whose templates read more gets the summaries, and an error if it reads a left-out key."""


class Results:
    def __init__(self, store: Store, cache: ResultCache | None = None) -> None:
        self.store = store
        self.cache = cache or ResultCache()

    def _pod(self, key: Key, job_name: str) -> str | None:
        for job, pods in self.store.jobs_of(key):
            if (job.get("metadata") or {}).get("name") == job_name and pods:
                return str((pods[-1].get("metadata") or {}).get("name") or "") or None
        return None

    async def enrich(self, key: Key, facts: RunFacts) -> RunFacts:
        """`facts` with the log results of finished attempts and the stored results wanted."""
        wanted_logs = log_wanted(facts)
        if wanted_logs:
            read = await asyncio.gather(*(self._read_log(key, job, ref)
                                          for job, ref in wanted_logs))
            done = {job.name: new for (job, _), new in zip(wanted_logs, read, strict=True)}
            facts = replace(facts, jobs=tuple(done.get(j.name, j) for j in facts.jobs))
        spec = facts.status.workflow_spec if facts.status else None
        if spec is None:
            return facts
        try:
            dag = build_cached(spec)
        except DagError:
            return facts
        wanted = wanted_results(facts, dag)
        if not wanted:
            return facts
        return replace(facts, results=await asyncio.to_thread(self._load_all, key[0], wanted))

    async def _read_log(self, key: Key, job: ObservedJob, ref: dict[str, Any]) -> ObservedJob:
        pod = self._pod(key, job.name)
        if pod is None:
            return with_log(job, None, "its pod is gone")
        try:
            data = await asyncio.to_thread(read_result_log, key[0], pod, ref)
        except ResultLogError as exc:
            return with_log(job, None, str(exc))
        except ApiException as exc:
            if exc.status in (400, 404):  # pod or container gone, log rotated away
                return with_log(job, None, kube.describe(exc))
            raise
        return with_log(job, data, None)

    def _load_all(self, namespace: str, wanted: dict[str, StoredResult]) -> dict[str, LoadedResult]:
        out: dict[str, LoadedResult] = {}
        budget = LOAD_BYTES_PER_PLAN
        for name, ref in wanted.items():
            if ref.size > budget:
                out[name] = LoadedResult(ref.sha256, error=f"the templates of the steps about to"
                                         f" start read more than {LOAD_BYTES_PER_PLAN:,} bytes"
                                         " of stored results")
                continue
            budget -= ref.size
            out[name] = self._load(namespace, ref)
        return out

    def _load(self, namespace: str, ref: StoredResult) -> LoadedResult:
        cache_key = (namespace, ref.config_map, ref.sha256)
        data = self.cache.get(cache_key)
        if data is None:
            try:
                data = load_result(namespace, ref.config_map, ref.sha256)
            except ResultReadError as exc:
                return LoadedResult(ref.sha256, error=str(exc))
            self.cache.put(cache_key, data)
        value = json.loads(data)
        return LoadedResult(ref.sha256, outputs=value if isinstance(value, dict) else {})

    async def store_one(self, ref: RunRef, action: StoreResult) -> None:
        await asyncio.to_thread(store_result, ref, action)
        self.cache.put((ref.namespace, action.config_map, action.sha256), action.data)
