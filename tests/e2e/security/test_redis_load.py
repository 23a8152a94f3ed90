"""The webhook rate limit holds under load (issue 11, defect 5).

The attack, as it worked before: 50 concurrent, correctly signed deliveries exhausted the
Redis connection pool ("No connection available"); that error was taken for "Redis is down",
and the `open` outage policy then admitted 43 runs against a limit of 30 per minute. Now a call
waits a bounded time for one of the pool's turns, and one that cannot be made in time is busy,
never down: the delivery is refused (503, Retry-After), the limit holds.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.e2e.operator.conftest import Kube, OperatorProcess
from tests.e2e.security.limits_kit import (
    NO_JOB_STEP,
    assert_healthy,
    eventually,
    run_names,
    signed,
    started,
    webhook_workflow,
)

LIMIT, DELIVERIES = 30, 50
PER = "1h"
"""The issue's 30 per minute, stretched: at 30 per minute a token returns every 2 s, and a
burst that a loaded machine spreads over seconds would legitimately admit a few more."""


async def _burst(op: OperatorProcess, namespace: str, workflow: str) -> list[httpx.Response]:
    url = f"http://127.0.0.1:{op.http_port}/hooks/{namespace}/{workflow}"
    limits = httpx.Limits(max_connections=DELIVERIES)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        async def one(i: int) -> httpx.Response:
            raw = json.dumps({"n": i}).encode()
            return await client.post(url, content=raw, headers=signed(raw, f"burst-{i}"))

        return list(await asyncio.gather(*(one(i) for i in range(DELIVERIES))))


def _attack(kube: Kube, op: OperatorProcess) -> Counter[int]:
    webhook_workflow(kube, "burst", {"rateLimit": {"limit": LIMIT, "per": PER},
                                     "history": {"successfulRuns": 100},  # keep all to count
                                     "steps": [NO_JOB_STEP]})
    # 401 (not 404): the operator's cache knows the workflow; no token is spent on it.
    eventually(lambda: httpx.post(f"http://127.0.0.1:{op.http_port}/hooks/{kube.namespace}"
                                  "/burst", json={}, timeout=30).status_code == 401, 60,
               "the operator's cache knows the workflow")
    answers = asyncio.run(_burst(op, kube.namespace, "burst"))
    codes = Counter(r.status_code for r in answers)
    for r in answers:
        assert r.status_code in (202, 429, 503), r.text
        if r.status_code == 503:
            assert r.json()["reason"] == "RateLimitUnchecked" and r.headers["Retry-After"]
    assert codes[202] <= LIMIT, f"more deliveries accepted than the limit allows: {codes}"
    runs = run_names(kube)
    assert len(runs) <= LIMIT, f"{len(runs)} runs for a limit of {LIMIT}"
    # Every accepted delivery's run starts on the token it paid (none is charged twice).
    eventually(lambda: all(started(kube.run(name)) for name in runs), 60,
               "every created run starts")
    assert_healthy(op)
    return codes


@pytest.fixture
def restart_operator(
    running_operator: OperatorProcess, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., OperatorProcess]]:
    """Restart the package's operator with extra environment; restored afterwards."""

    def restart(**env: str) -> OperatorProcess:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        running_operator.stop()
        running_operator.start()
        return running_operator

    yield restart
    monkeypatch.undo()
    running_operator.stop()
    running_operator.start()


def test_fifty_deliveries_at_once_admit_no_more_than_the_limit(
    kube: Kube, running_operator: OperatorProcess
) -> None:
    codes = _attack(kube, running_operator)
    # The default pool is sized for this: the limit is met exactly. A delivery may still be
    # unchecked (503) when a loaded machine stalls the operator's loop, but hardly any.
    assert codes[202] == LIMIT and codes[503] <= DELIVERIES // 10, codes


def test_an_exhausted_pool_never_fails_open(
    kube: Kube, restart_operator: Callable[..., OperatorProcess]
) -> None:
    """One connection and no patience: most calls find the pool busy. Before, each of those
    was an "outage" and the open policy let the delivery through."""
    op = restart_operator(TASKFORGE_REDIS_POOL_SIZE="1", TASKFORGE_REDIS_POOL_TIMEOUT="1ms",
                          TASKFORGE_RATE_LIMIT_POLICY="open")
    codes = _attack(kube, op)
    assert codes[503] > 0, f"the pool was never exhausted, the test proves nothing: {codes}"
