"""Step start-up: a `log` step's Job created -> its pod finished, on the agent and a real node.

DESIGN.md's target: p50 < 1 s on a real node ("every step pays it"). Each sample is one
Job exactly as the operator builds it (taskforge.adapters.jobs.build_job: the executor
image, restricted security context, /tmp emptyDir, termination message), created alone so
the figure is latency, not throughput; the clock runs from just before the create call to
the watch event that shows the pod Succeeded. Also printed: the size of the image each
step pod uses (the OCI archive `make image` exports; on the real node nothing is pulled,
the image is imported once at node start).

    .venv/bin/python bench/bench_step_startup.py [--node agent|kubelet|both] [-n 20]
                                                 [--image IMAGE]... [--archive OCI_TAR]...

``--archive`` imports more images into the real node first (bench/lean_executor_image.sh
makes a lean executor image to compare).

Runs its own local cluster per node (the real node needs `make image` and root).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack"))

from kubernetes import client, config, watch  # noqa: E402
from localcluster import LocalCluster  # noqa: E402
from localcluster.realnode import default_image_dir  # noqa: E402
from taskforge.adapters.jobs import JobSettings, RunRef, build_job  # noqa: E402
from taskforge.engine.actions import CreateJob  # noqa: E402

# `make image` tags localhost/taskforge:dev with this name too; the agent runs any image
# whose name holds `taskforge-executor` as the executor from the venv.
DEFAULT_IMAGE = "taskforge-executor:dev"


def log_job(name: str, namespace: str, image: str) -> dict[str, Any]:
    action = CreateJob(step="say", attempt=1, job_name=name, step_type="log",
                       config={"message": "hello from the bench", "level": "info"},
                       timeout_seconds=120, labels={"bench": name})
    job = build_job(action, RunRef("bench", namespace, str(uuid.uuid4())),
                    JobSettings(executor_image=image, image_pull_policy="IfNotPresent",
                                ttl_seconds_after_finished=None))
    del job["metadata"]["ownerReferences"]  # no WorkflowRun here; GC would delete the Job
    return job


def measure(api: client.ApiClient, namespace: str, image: str, count: int) -> list[float]:
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    samples: list[float] = []
    for i in range(count + 1):  # the first one warms caches and is dropped
        name = f"bench-{i}-{uuid.uuid4().hex[:4]}"
        done = threading.Event()
        finished: list[float] = []

        def watch_pod(name: str = name, done: threading.Event = done,
                      finished: list[float] = finished) -> None:
            w = watch.Watch()
            for event in w.stream(core.list_namespaced_pod, namespace,
                                  label_selector=f"bench={name}", timeout_seconds=120):
                phase = event["object"].status.phase
                if phase in ("Succeeded", "Failed"):
                    finished.append(time.monotonic())
                    if phase == "Failed":
                        print(f"  {name} failed: {event['object'].status}", file=sys.stderr)
                    w.stop()
            done.set()

        thread = threading.Thread(target=watch_pod, daemon=True)
        thread.start()
        time.sleep(0.2)  # the watch is established
        t0 = time.monotonic()
        batch.create_namespaced_job(namespace, log_job(name, namespace, image))
        done.wait(130)
        if finished and i > 0:
            samples.append(finished[0] - t0)
        batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
    return samples


def run_node(node: str, images: list[str], count: int,
             archives: list[Path]) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{node}-") as tmp:
        cluster = LocalCluster(Path(tmp), with_redis=False, node=node)
        cluster.start(timeout=300)
        try:
            real = cluster.real_node
            for archive in archives if real is not None else []:
                subprocess.run([str(real.bin_dir / "ctr"), "--address", str(real.address),
                                "-n", "k8s.io", "images", "import", str(archive)], check=True)
            api = config.new_client_from_config(str(cluster.kubeconfig))
            ns = f"bench-{uuid.uuid4().hex[:6]}"
            client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
            while not client.CoreV1Api(api).list_namespaced_service_account(ns).items:
                time.sleep(0.1)
            if real is None:  # the agent runs only the executor, whatever the image
                images = images[:1]
            return {image: measure(api, ns, image, count) for image in images}
        finally:
            cluster.stop()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", choices=("agent", "kubelet", "both"), default="both")
    parser.add_argument("-n", "--count", type=int, default=20)
    parser.add_argument("--image", action="append", help=f"default {DEFAULT_IMAGE}")
    parser.add_argument("--archive", action="append", type=Path, default=[],
                        help="an OCI archive to import into the real node first")
    parser.add_argument("--json", type=Path, help="also write the samples here")
    args = parser.parse_args()
    images = args.image or [DEFAULT_IMAGE]
    nodes = ["agent", "kubelet"] if args.node == "both" else [args.node]
    results: dict[str, dict[str, list[float]]] = {}
    for node in nodes:
        print(f"== {node}: {args.count} log steps, one at a time", flush=True)
        results[node] = run_node(node, images, args.count, args.archive)
    print()
    print("| node | image | n | p50 | p90 | max |")
    print("|---|---|---|---|---|---|")
    for node, by_image in results.items():
        for image, samples in by_image.items():
            if not samples:
                print(f"| {node} | {image} | 0 | - | - | - |")
                continue
            print(f"| {node} | {image} | {len(samples)} | {statistics.median(samples):.2f} s "
                  f"| {pct(samples, 0.9):.2f} s | {max(samples):.2f} s |")
    oci = default_image_dir()
    print()
    print("| image archive (what a node imports) | size |")
    print("|---|---|")
    for archive in sorted(oci.glob("*.tar")):
        print(f"| {archive.stem} | {archive.stat().st_size / 2**20:.0f} MiB |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
