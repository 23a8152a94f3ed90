"""`bench/bench_archive.py logread`: what one archive log read costs each process (issue 18).

The read is made as the operator makes it (archive_pods.read_log_tail), against a plain GET
of the pod, on a cluster doing nothing else but holding many finished pods on its node.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes.config import kube_config
from taskforge.adapters import kube_async
from taskforge.adapters.archive_pods import read_log_tail

from .cluster import Bench, bench_cpu_seconds, workdir
from .common import INSTANT_IMAGE


async def _calls(call: Callable[[], Awaitable[Any]], n: int, at_once: int) -> None:
    gate = asyncio.Semaphore(at_once)

    async def one() -> None:
        async with gate:
            await call()

    try:
        await asyncio.gather(*(one() for _ in range(n)))
    finally:
        await kube_async.close()


def bench_logread(reads: int, others: int, at_once: int) -> list[str]:
    """What one archive log read (archive_pods.read_log_tail, as the operator makes it) costs
    every process, against a plain GET of the pod: `reads` calls, `at_once` at once, on a cluster
    doing nothing else but holding `others` finished pods; ms of CPU per call by process."""
    args = argparse.Namespace(crds=Path(__file__).resolve().parents[2] / "crds", profile=False)
    with workdir(False) as wd:
        b = Bench(wd, args)
        try:
            b.start()
            ns = "bench-logread"
            b.k.namespace(ns)
            pods: dict[str, dict[str, Any]] = {"empty": {"image": INSTANT_IMAGE},
                    "one-line": {"image": "busybox",
                                 "command": ["sh", "-c", "echo bench step only"]}}
            for name, container in pods.items():
                b.k.post(f"/api/v1/namespaces/{ns}/pods", {
                    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                    "spec": {"restartPolicy": "Never",
                             "containers": [{"name": "step", **container}]}})
            # the other pods on the node, as at a throughput round's end (a round's pods stay
            # until their Jobs' TTL): the node's log lookup must not depend on how many
            for i in range(others):
                pods[f"other-{i:04d}"] = {"image": INSTANT_IMAGE}
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda item: b.k.post(f"/api/v1/namespaces/{ns}/pods", {
                    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": item[0]},
                    "spec": {"restartPolicy": "Never",
                             "containers": [{"name": "step", **item[1]}]}}),
                    [(n, c) for n, c in pods.items() if n.startswith("other-")]))
            deadline = time.monotonic() + 120
            while sum(p.get("status", {}).get("phase") == "Succeeded" for p in b.k.get(
                    f"/api/v1/namespaces/{ns}/pods").get("items", [])) < len(pods):
                if time.monotonic() > deadline:
                    raise RuntimeError("the log bench's pods did not succeed in 120 s")
                time.sleep(0.2)
            # the client read $KUBECONFIG when it was imported: point it at this cluster
            kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(b.cluster.kubeconfig)
            cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
                ("GET pod", lambda: kube_async.request(
                    "GET", f"/api/v1/namespaces/{ns}/pods/empty")),
                ("pods/log, empty log", lambda: read_log_tail(ns, "empty", 1 << 20, 50_000)),
                ("pods/log, one line", lambda: read_log_tail(ns, "one-line", 1 << 20, 50_000)),
            ]
            rows = []
            names: list[str] = []
            for label, call in cases:
                asyncio.run(_calls(call, 20, at_once))  # warm-up: connections, caches
                time.sleep(1)
                before, c0, t0 = b.cluster_cpu(), bench_cpu_seconds(), time.monotonic()
                asyncio.run(_calls(call, reads, at_once))
                wall = time.monotonic() - t0
                after, mine = b.cluster_cpu(), bench_cpu_seconds() - c0
                per = {n: 1000 * (after[n] - before[n]) / reads for n in after if n in before}
                per["this client (the operator's side)"] = 1000 * mine / reads
                names = names or sorted(per)
                rows.append((label, per, 1000 * wall / reads))
            load = Path("/proc/loadavg").read_text().split()[0]
        finally:
            b.cluster.stop()
    head = "| ms of CPU per call | " + " | ".join(r[0] for r in rows) + " |"
    lines = [f"One archive log read vs a GET: {reads} calls each, {at_once} at once, idle"
             f" cluster with {others} other finished pods on the node; load {load}", head,
             "|---" * (len(rows) + 1) + "|"]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{r[1].get(n, 0):.2f}" for r in rows) + " |")
    lines.append("| **all** | " + " | ".join(f"**{sum(r[1].values()):.2f}**" for r in rows)
                 + " |")
    lines.append(f"| wall per call ({at_once} at once) | " + " | ".join(f"{r[2]:.2f}" for r in rows)
                 + " |")
    return lines
