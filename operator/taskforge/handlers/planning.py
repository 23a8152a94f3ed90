"""Running `engine.plan` without ever rendering a hostile template on the event loop.

Plain lookups (`{{ params.x }}`) are rendered inside `plan()` in microseconds, so most plans
run on the loop as before and pay no thread hop and no IPC. A plan that meets a config
needing real Jinja is abandoned (`defer_to_worker` raises NeedsWorker; `plan` is pure, so
throwing its half-done work away is harmless) and planned again in a thread of our own, where
the renderer blocks on a template worker process (adapters/template_workers.py) for at most
its time limit. Only that thread waits; health checks, webhooks and other runs go on.

Why a second plan rather than rendering the configs first: which steps launch, and with
which `steps.*` data, is what the plan decides; rendering ahead would duplicate it.

At most `workers + 1` reconciles wait on the template workers at once. Another one that
needs them gets None and requeues its run shortly: a burst of runs with slow templates then
holds at most that many of the work queue's workers (TASKFORGE_WORKERS, 8), and the others
keep serving every other run.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from taskforge.adapters.template_workers import TemplateWorkers
from taskforge.engine.actions import Plan
from taskforge.engine.facts import RunFacts
from taskforge.engine.planner import plan
from taskforge.engine.templating import NeedsWorker, defer_to_worker

BUSY_RETRY_SECONDS = 0.2


class Planner:
    def __init__(self, workers: TemplateWorkers | None = None) -> None:
        self.workers = workers if workers is not None else TemplateWorkers.from_env()
        # One thread per worker, plus one: a thread waiting for a busy worker is cheap.
        self.slots = self.workers.size + 1
        self._threads = ThreadPoolExecutor(self.slots, thread_name_prefix="plan")
        self._busy = 0

    async def plan(self, facts: RunFacts) -> Plan | None:
        """The plan; None when it needs the template workers and all their slots are taken
        (requeue the run after BUSY_RETRY_SECONDS)."""
        try:
            return plan(facts, defer_to_worker)
        except NeedsWorker:
            pass
        if self._busy >= self.slots:
            return None
        self._busy += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._threads,
                                              partial(plan, facts, self.workers.render))
        finally:
            self._busy -= 1

    def start(self) -> None:
        self.workers.start()

    def close(self) -> None:
        self.workers.close()
        self._threads.shutdown(wait=False, cancel_futures=True)
