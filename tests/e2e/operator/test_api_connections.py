"""The operator's API client keeps its connections alive (issue 14, item 1).

An unread `_preload_content=False` response keeps its urllib3 connection checked out, so the
next request opens a new TLS connection: before the fix each Job create and each Event cost
a handshake. Here the operator's own adapter functions make 200 Job creates (plus Events,
a 409 and deletes) from 8 threads against the real API server, and urllib3's pool counts
the connections it opened: at most one per thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from taskforge.adapters import kube, kube_async
from taskforge.adapters.events import post_event, post_event_async

THREADS = 8
JOBS = 200


def _job(namespace: str, i: int) -> dict[str, Any]:
    """A suspended Job shaped like the operator's (labels): no pod is ever made for it."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"conn-{i:03d}",
            "namespace": namespace,
            "labels": {"taskforge.io/run": "conn", "taskforge.io/step": f"s{i}",
                       "taskforge.io/attempt": "1"},
        },
        "spec": {
            "suspend": True,
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "step", "image": "taskforge.io/bench-instant"}]}},
        },
    }


def _pool_counts(api: client.ApiClient) -> tuple[int, int]:
    """(connections opened, requests made) over every urllib3 pool of the client."""
    pools = api.rest_client.pool_manager.pools
    opened = requests = 0
    for key in pools.keys():  # noqa: SIM118 - RecentlyUsedContainer has no __iter__
        pool = pools[key]
        opened += pool.num_connections
        requests += pool.num_requests
    return opened, requests


@pytest.fixture
def api(cluster: Any) -> Iterator[client.ApiClient]:
    fresh = cluster.api_client()
    previous = kube.set_api_client(fresh)
    try:
        yield fresh
    finally:
        kube.set_api_client(previous)
        fresh.close()


def test_200_job_creates_reuse_a_handful_of_connections(
    api: client.ApiClient, namespace: str
) -> None:
    now = datetime.now(UTC)
    involved = {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": namespace, "namespace": namespace, "uid": "x"}}

    def create(i: int) -> bool:
        created = kube.create_job(namespace, _job(namespace, i))
        if i % 4 == 0:
            post_event(involved, "Normal", "Test", f"event {i}", now)
        return created

    with ThreadPoolExecutor(THREADS) as pool:
        created = list(pool.map(create, range(JOBS)))
        # a create of an existing Job: the 409 and the read that checks its labels
        again = list(pool.map(lambda i: kube.create_job(namespace, _job(namespace, i)),
                              range(20)))
        list(pool.map(lambda i: kube.delete_job(namespace, f"conn-{i:03d}"), range(20)))
    assert all(created) and not any(again)
    opened, requests = _pool_counts(api)
    assert requests >= JOBS + JOBS // 4 + 20 * 2 + 20  # the count is real
    assert opened <= THREADS, f"{opened} connections for {requests} requests"


def test_the_event_loop_path_reuses_its_connections(api: client.ApiClient, namespace: str) -> None:
    """kube_async (Job creates, status patches, Events on the hot path): 200 creates 8 at a
    time, Events, and a status patch's 404, on a handful of keep-alive connections."""
    opened: list[int] = []
    trace = aiohttp.TraceConfig()

    async def count(*_: object) -> None:
        opened.append(1)

    trace.on_connection_create_end.append(count)
    now = datetime.now(UTC)
    involved = {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": namespace, "namespace": namespace, "uid": "y"}}

    async def main() -> list[bool]:
        gate = asyncio.Semaphore(THREADS)

        async def create(i: int) -> bool:
            async with gate:
                created = await kube_async.create_job(namespace, _job(namespace, 300 + i))
                if i % 4 == 0:
                    await post_event_async(involved, "Normal", "Test", f"event {i}", now)
                return created

        try:
            created = await asyncio.gather(*(create(i) for i in range(JOBS)))
            with pytest.raises(ApiException) as missing:
                await kube_async.patch_status(kube.RUNS, namespace, "no-such-run",
                                              {"status": {}})
            assert kube.is_status(missing.value, 404), missing.value
            return created
        finally:
            await kube_async.close()

    kube_async.TRACE_CONFIGS.append(trace)
    try:
        created = asyncio.run(main())
    finally:
        kube_async.TRACE_CONFIGS.remove(trace)
    assert all(created)
    assert 1 <= len(opened) <= THREADS, f"{len(opened)} connections for {JOBS} creates"
