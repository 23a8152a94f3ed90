"""Benchmark of the webhook endpoint: signed deliveries per second, each creating a WorkflowRun.

Target: >= 300 deliveries/s with HMAC verification and run creation on the local API server.
The server runs in a child process (as it would in the operator, with the workflow read from a
cache); this process is the load generator: loopback only, bounded (default 2,000 deliveries at
concurrency 16, then 500 redeliveries, which take the 409 path and return the existing run).

Usage: .venv/bin/python bench/bench_webhook.py [--requests N] [--concurrency C]
                                               [--kubeconfig PATH]
Without --kubeconfig a local control plane (no agent, no Redis) is started in a temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes import client, config
from localcluster import LocalCluster
from taskforge.adapters import kube
from taskforge.engine.webhook import sign
from taskforge.handlers.webhook_server import start_webhook_server

ROOT = Path(__file__).resolve().parents[1]
KEY = b"bench-hmac-key-" + uuid.uuid4().hex.encode()
WORKFLOW = "bench-hook"
TARGET_RPS = 300.0


def api_client(kubeconfig: Path) -> client.ApiClient:
    cfg = client.Configuration()
    load: Callable[..., None] = config.load_kube_config  # untyped in the client
    load(config_file=str(kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = 32
    return client.ApiClient(cfg)


# --- the server (child process) ----------------------------------------------------------------


def serve(kubeconfig: Path, port_file: Path) -> None:
    kube.set_api_client(api_client(kubeconfig))
    cache: dict[tuple[str, str], dict[str, Any] | None] = {}

    def lookup(ns: str, name: str) -> dict[str, Any] | None:
        if (ns, name) not in cache:  # the operator reads its watch cache; this is the stand-in
            cache[(ns, name)] = kube.get_object(kube.WORKFLOWS, ns, name)
        return cache[(ns, name)]

    async def main() -> None:
        runner = await start_webhook_server(0, lookup, host="127.0.0.1")
        await asyncio.to_thread(port_file.write_text, str(runner.addresses[0][1]))
        await asyncio.Event().wait()

    asyncio.run(main())


# --- setup -------------------------------------------------------------------------------------


@contextmanager
def cluster_kubeconfig(given: Path | None) -> Iterator[tuple[Path, Path]]:
    """(kubeconfig, kubectl) of the given cluster, or of a fresh local control plane."""
    if given is not None:
        yield given, Path(shutil.which("kubectl") or "kubectl")
        return
    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as tmp:
        local = LocalCluster(Path(tmp), with_agent=False, with_redis=False)
        with local:
            yield local.kubeconfig, local.kubectl_path()


def kubectl(kubectl_path: Path, kubeconfig: Path, *args: str, stdin: str | None = None,
            check: bool = True) -> None:
    done = subprocess.run([str(kubectl_path), "--kubeconfig", str(kubeconfig), *args],
                          input=stdin, capture_output=True, text=True, check=False)
    if check and done.returncode:
        raise SystemExit(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")


def prepare(kubectl_path: Path, kubeconfig: Path, namespace: str) -> None:
    kubectl(kubectl_path, kubeconfig, "apply", "--server-side", "--force-conflicts",
            "-f", str(ROOT / "crds"))
    kubectl(kubectl_path, kubeconfig, "wait", "--for", "condition=established", "--timeout=60s",
            "crd/workflows.taskforge.io", "crd/workflowruns.taskforge.io")
    kubectl(kubectl_path, kubeconfig, "create", "namespace", namespace)
    objects = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hook-key"},
         "stringData": {"key": KEY.decode()}},
        {"apiVersion": "taskforge.io/v1alpha1", "kind": "Workflow",
         "metadata": {"name": WORKFLOW},
         "spec": {"params": [{"name": "ref"}],
                  "triggers": {"webhook": {"secretRef": {"name": "hook-key", "key": "key"},
                                           "paramsFromBody": {"ref": "pull_request.head.ref"}}},
                  "steps": [{"name": "say", "log": {"message": "{{ params.ref }}"}}]}},
    ]
    kubectl(kubectl_path, kubeconfig, "apply", "-n", namespace, "-f", "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))


# --- the load ----------------------------------------------------------------------------------


def payload(i: int) -> bytes:
    body = {"action": "opened", "number": i,
            "pull_request": {"number": i, "head": {"ref": f"feature-{i}"},
                             "title": "x" * 200, "user": {"login": "bench"}}}
    return json.dumps(body).encode()


async def load(url: str, deliveries: list[str], concurrency: int
               ) -> tuple[float, list[float], Counter[str]]:
    bodies = {d: payload(i) for i, d in enumerate(deliveries)}
    queue: asyncio.Queue[str] = asyncio.Queue()
    for d in deliveries:
        queue.put_nowait(d)
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            delivery = queue.get_nowait()
            body = bodies[delivery]
            headers = {"Content-Type": "application/json", "X-Taskforge-Delivery": delivery,
                       "X-Taskforge-Signature": sign(KEY, body)}
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                answer = await response.json()
            latencies.append(time.perf_counter() - t0)
            outcomes[f"{response.status} duplicate" if answer.get("duplicate")
                     else str(response.status)] += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return elapsed, latencies, outcomes


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(phase: str, elapsed: float, latencies: list[float], outcomes: Counter[str]) -> str:
    rps = len(latencies) / elapsed
    p50, p99 = statistics.median(latencies) * 1000, percentile(latencies, 0.99) * 1000
    answers = ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))
    return (f"| {phase:<22} | {len(latencies):>8} | {rps:>8.0f} | {p50:>7.1f} | {p99:>7.1f}"
            f" | {answers} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--replays", type=int, default=500)
    parser.add_argument("--kubeconfig", type=Path, default=None)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.kubeconfig, args.port_file)
        return

    with cluster_kubeconfig(args.kubeconfig) as (kubeconfig, kubectl_path), \
            tempfile.TemporaryDirectory() as tmp:
        namespace = f"bench-webhook-{uuid.uuid4().hex[:6]}"
        prepare(kubectl_path, kubeconfig, namespace)
        port_file = Path(tmp) / "port"
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--kubeconfig", str(kubeconfig),
             "--port-file", str(port_file)], env=dict(os.environ),
        )
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists() or not port_file.read_text():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the webhook server did not start")
                time.sleep(0.05)
            url = f"http://127.0.0.1:{port_file.read_text()}/hooks/{namespace}/{WORKFLOW}"
            asyncio.run(load(url, [f"warm-{i}" for i in range(100)], args.concurrency))
            fresh = [f"d-{i}" for i in range(args.requests)]
            results = [("new deliveries", *asyncio.run(load(url, fresh, args.concurrency)))]
            replays = fresh[: args.replays]
            results.append(("redeliveries (409)", *asyncio.run(load(url, replays,
                                                                    args.concurrency))))
        finally:
            server.kill()
            server.wait()
            kubectl(kubectl_path, kubeconfig, "delete", "namespace", namespace, "--wait=false",
                    check=False)

    print(f"\nwebhook benchmark: {args.requests} deliveries, concurrency {args.concurrency},"
          f" loopback; {platform.node()}, {os.cpu_count()} CPUs,"
          f" Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}")
    print("| phase                  | requests |    req/s |  p50 ms |  p99 ms | responses |")
    print("|------------------------|---------:|---------:|--------:|--------:|-----------|")
    for phase, elapsed, latencies, outcomes in results:
        print(row(phase, elapsed, latencies, outcomes))
    new_rps = len(results[0][2]) / results[0][1]
    verdict = "meets" if new_rps >= TARGET_RPS else "MISSES"
    print(f"\nnew deliveries: {new_rps:.0f} req/s {verdict} the target of {TARGET_RPS:.0f}")
    if results[0][3] != Counter({"202": args.requests}):
        raise SystemExit(f"unexpected responses: {results[0][3]}")


if __name__ == "__main__":
    main()
