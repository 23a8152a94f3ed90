"""The template worker processes: what the sandbox cannot bound, the process does.

Real worker processes (`python -m taskforge.adapters.template_worker`), no mocks: a render
that runs out of time is killed and named TemplateLimit, one that runs out of memory too,
and the pool answers the next render at once with a fresh worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from taskforge.adapters.template_workers import TemplateWorkers
from taskforge.engine.actions import Plan
from taskforge.engine.sandbox import TemplateError, TemplateLimitError
from taskforge.engine.templating import render_in_process
from taskforge.handlers.planning import Planner

from tests.engine.enginekit import cond, creates, facts, step, workflow

CTX: dict[str, Any] = {"params": {"who": "world", "kib": "k" * 1024},
                       "steps": {"a": {"phase": "Succeeded", "outputs": {"id": 7}}}}
# Not bounded from inside the sandbox: one filter call that is quadratic (sum of lists),
# and `~` doubling a string in a loop of 20 iterations.
SLOW = "{{ ([[1]] * 100000) | sum(start=[]) | length }}"
GREEDY = ("{% set ns = namespace(s='x' * 200000) %}{% for i in range(20) %}"
          "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}")


@pytest.fixture(scope="module")
def pool() -> Iterator[TemplateWorkers]:
    workers = TemplateWorkers(size=1, timeout=1.0)
    workers.start()
    yield workers
    workers.close()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.parametrize(
    "config",
    [
        {"message": "hello {{ params.who | upper }}", "level": "info"},
        {"source": "{% for i in range(3) %}{{ i }}{% endfor %} {{ steps.a.outputs.id + 1 }}",
         "env": [{"name": "A", "value": "{{ params.kib | length }}"},
                 {"name": "B", "valueFrom": {"secretKeyRef": {"name": "{{ x }}", "key": "k"}}}]},
    ],
)
def test_renders_like_the_in_process_renderer(pool: TemplateWorkers,
                                              config: dict[str, Any]) -> None:
    assert pool.render(config, CTX, "script") == render_in_process(config, CTX, "script")


def test_errors_and_caps_come_back_with_their_kind(pool: TemplateWorkers) -> None:
    with pytest.raises(TemplateLimitError, match=r"^log\.message: string multiplication"):
        pool.render({"message": "{{ 'x' * 30000000 }}"}, CTX, "log")
    with pytest.raises(TemplateError, match=r"^log\.message: 'nope' is undefined") as err:
        pool.render({"message": "{{ nope }}"}, CTX, "log")
    assert not isinstance(err.value, TemplateLimitError)


def test_a_render_out_of_time_is_killed_and_the_next_one_is_served(
    pool: TemplateWorkers,
) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateLimitError,
                       match=r"^log\.message: rendering took longer than 1 s"):
        pool.render({"message": SLOW}, CTX, "log")
    assert time.monotonic() - started < 5
    assert pool.render({"message": "{{ params.who | title }}"}, CTX, "log") == {
        "message": "World"}


def test_a_render_out_of_memory_fails_and_the_worker_stays_small() -> None:
    # Its own pool with a time limit far off: the worker runs at nice 10, so on a machine
    # whose cores are busy it may get a tenth of a core, and the 1 s limit of `pool` would
    # end the render before it reaches the memory limit this test is about.
    pool = TemplateWorkers(size=1, timeout=60.0)
    pool.start()
    try:
        with pytest.raises(TemplateLimitError, match=r"^log\.message: .*memory"):
            pool.render({"message": GREEDY}, CTX, "log")
        assert pool.render({"message": "{{ 1 + 1 }}"}, CTX, "log") == {"message": "2"}
        worker = pool._workers[0].proc
        assert worker is not None and _rss_kib(worker.pid) < 150 * 1024
    finally:
        pool.close()


def test_a_worker_that_died_while_idle_is_replaced(pool: TemplateWorkers) -> None:
    proc = pool._workers[0].proc
    assert proc is not None
    proc.kill()
    proc.wait()
    assert pool.render({"message": "{{ 2 * 3 }}"}, CTX, "log") == {"message": "6"}


def test_close_stops_the_workers() -> None:
    workers = TemplateWorkers(size=2)
    workers.start()
    procs = [w.proc for w in workers._workers]
    workers.close()
    assert all(p is not None and p.poll() is not None for p in procs)


# -- the planner: real Jinja off the event loop, and a cap on reconciles waiting for it ------


def test_plans_with_slow_templates_never_stall_the_loop_and_wait_in_few_slots() -> None:
    planner = Planner(TemplateWorkers(size=1, timeout=1.0))
    slow = facts(workflow(step("a", message=SLOW)))
    fast = facts(workflow(step("a", message="{{ run.name }}")))

    async def main() -> tuple[list[Plan | None], Plan | None, float]:
        gaps: list[float] = []

        async def ticker() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        slow_plans = asyncio.gather(*(planner.plan(slow) for _ in range(3)))
        await asyncio.sleep(0.05)
        quick = await planner.plan(fast)  # never waits for the workers
        results = await slow_plans
        tick.cancel()
        return list(results), quick, max(gaps)

    try:
        results, quick, worst_gap = asyncio.run(main())
    finally:
        planner.close()
    assert quick is not None and creates(quick)[0].config["message"] == "run1"
    assert sum(r is None for r in results) == 1  # 2 slots (1 worker + 1): the third requeues
    for p in (r for r in results if r is not None):
        assert cond(p) == ("False", "TemplateLimit")
        assert "log.message: rendering took longer than 1 s" in (p.status.message or "")
    assert worst_gap < 0.5, worst_gap
