"""Which API client for the operator's writes: the sync client in threads, or one async client?

Both keep their connections alive (issue 14, item 1). Measured on the local control plane,
interleaved A/B/A/B: N Job creates (suspended, so no pod follows) with 8 in flight, from
an asyncio loop as the operator makes them:

  threads   `asyncio.to_thread(kube.create_job, ...)`: the official client, in the
            loop's default executor (what the operator does)
  aiohttp   one `aiohttp.ClientSession` (kopf's library) POSTing the same JSON, body read

Printed per round: wall time per create, this process's CPU per create, connections opened.
Run by hand (not part of `make bench`): .venv/bin/python bench/api_client_ab.py [--creates N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import aiohttp
from kubernetes import client, config
from localcluster import LocalCluster

sys.path.append(str(Path(__file__).resolve().parents[1]))
from taskforge.adapters import kube

IN_FLIGHT = 8


def job(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": ns, "labels": {
            "taskforge.io/run": "ab", "taskforge.io/step": name, "taskforge.io/attempt": "1"}},
        "spec": {"suspend": True, "backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "step", "image": "taskforge.io/bench-instant"}]}}},
    }


async def threads(ns: str, names: list[str]) -> None:
    sem = asyncio.Semaphore(IN_FLIGHT)

    async def one(name: str) -> None:
        async with sem:
            await asyncio.to_thread(kube.create_job, ns, job(ns, name))

    await asyncio.gather(*(one(n) for n in names))


async def with_aiohttp(session: aiohttp.ClientSession, host: str, ns: str,
                       names: list[str]) -> None:
    sem = asyncio.Semaphore(IN_FLIGHT)
    url = f"{host}/apis/batch/v1/namespaces/{ns}/jobs?fieldManager=taskforge-operator"

    async def one(name: str) -> None:
        async with sem, session.post(url, json=job(ns, name)) as resp:
            await resp.read()
            resp.raise_for_status()

    await asyncio.gather(*(one(n) for n in names))


def pool_connections(api: client.ApiClient) -> int:
    pools = api.rest_client.pool_manager.pools
    return sum(pools[k].num_connections for k in pools.keys())  # noqa: SIM118


async def main_async(cluster: LocalCluster, creates: int, rounds: int) -> None:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig),  # type: ignore[no-untyped-call]
                            client_configuration=cfg)
    api = client.ApiClient(cfg)
    kube.set_api_client(api)
    core = client.CoreV1Api(api)
    ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
    ctx.load_cert_chain(str(cfg.cert_file), str(cfg.key_file))
    connector = aiohttp.TCPConnector(ssl=ctx, limit=IN_FLIGHT)
    opened_aiohttp = 0

    async def on_conn(*_: Any) -> None:
        nonlocal opened_aiohttp
        opened_aiohttp += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_conn)
    rows: list[tuple[str, float, float, int]] = []
    async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as session:
        for r in range(rounds):
            for mode in ("threads", "aiohttp"):
                ns = f"ab-{r}-{mode}"
                core.create_namespace(cast(Any, {"metadata": {"name": ns}}))
                names = [f"j-{i:04d}" for i in range(creates)]
                conns0, aio0 = pool_connections(api), opened_aiohttp
                cpu0, t0 = time.process_time(), time.perf_counter()
                if mode == "threads":
                    await threads(ns, names)
                else:
                    await with_aiohttp(session, cfg.host, ns, names)
                wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                opened = (pool_connections(api) - conns0 if mode == "threads"
                          else opened_aiohttp - aio0)
                rows.append((mode, wall, cpu, opened))
                print(f"round {r} {mode:8s} wall {1000 * wall / creates:5.2f} ms/create  "
                      f"CPU {1000 * cpu / creates:5.2f} ms/create  new connections {opened}  "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)
                core.delete_namespace(ns)
    for mode in ("threads", "aiohttp"):
        mine = [x for x in rows if x[0] == mode]
        print(f"{mode:8s} mean wall {1000 * sum(x[1] for x in mine) / len(mine) / creates:.2f} "
              f"ms/create, mean CPU {1000 * sum(x[2] for x in mine) / len(mine) / creates:.2f}"
              " ms/create (this process)")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--creates", type=int, default=400)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="taskforge-ab-") as tmp:
        cluster = LocalCluster(Path(tmp), with_agent=False, with_redis=False)
        cluster.start()
        try:
            asyncio.run(main_async(cluster, args.creates, args.rounds))
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
