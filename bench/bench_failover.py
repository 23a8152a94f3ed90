"""Benchmark: leader failover with two operator replicas (issue 15 item 1; not a timed test).

Starts its own LocalCluster and two real operators sharing one Lease (the chart's default
timing: lease 10 s, renew deadline 7 s, retry 1 s). Each round takes the leader away, creates
a run at once, and measures:

  takeover      from the leader's end to the Lease naming the standby (the API server's view)
  first Job     from the leader's end to the first Job of the run created right after it:
                the new leader has caught up and acts
  duplicates    Jobs per step attempt of that run (must be 1)

Rounds alternate `kill -9` (a crash: the standby waits out the lease term) and SIGTERM (a
rolling update: the leader releases the Lease, the standby takes it at its next retry). The
stopped replica comes back as a new one (a new pod's name) and becomes the next standby.
Target (DESIGN.md): failover <= 15 s, nothing duplicated.

Usage: .venv/bin/python bench/bench_failover.py [--rounds N] [--record] [--keep]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.append(str(Path(__file__).resolve().parents[1]))

from bench.operator_bench.cluster import Bench, Operator, workdir
from bench.operator_bench.common import API, RESULTS, ROOT, quantile

LEASE_NS = "default"
TARGET_SECONDS = 15.0


class Replicas:
    def __init__(self, bench: Bench, wd: Path) -> None:
        self.bench, self.wd = bench, wd
        self.lease = f"bench-{uuid.uuid4().hex[:6]}"
        self.count = 0

    def start(self) -> tuple[str, Operator]:
        self.count += 1
        name = f"replica-{self.count}"
        op = Operator(self.bench.cluster, self.wd, name, extra_env={
            "TASKFORGE_LEASE_NAME": self.lease, "TASKFORGE_LEASE_NAMESPACE": LEASE_NS,
            "TASKFORGE_LEASE_IDENTITY": name})
        op.start()
        deadline = time.monotonic() + 60
        while not httpx.get(f"http://127.0.0.1:{op.http_port}/readyz", timeout=5).is_success:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready:\n{op.process.log_tail(30)}")
            time.sleep(0.1)
        return name, op

    def holder(self) -> str | None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases/{self.lease}"
        if not self.bench.k.exists(path):
            return None
        holder = self.bench.k.get(path).get("spec", {}).get("holderIdentity")
        return str(holder) if holder else None

    def wait_holder(self, want: str, timeout: float = 60) -> float:
        """Monotonic time at which the Lease names `want` (polled every 20 ms)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.holder() == want:
                return time.monotonic()
            time.sleep(0.02)
        raise RuntimeError(f"lease {self.lease} not taken by {want} in {timeout:.0f}s")


def _jobs(bench: Bench, ns: str, run: str) -> list[dict[str, Any]]:
    found = bench.k.get(f"/apis/batch/v1/namespaces/{ns}/jobs",
                        labelSelector=f"taskforge.io/run={run}")
    return list(found.get("items") or [])


def first_job_at(bench: Bench, ns: str, run: str, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _jobs(bench, ns, run):
            return time.monotonic()
        time.sleep(0.02)
    raise RuntimeError(f"no Job for run {run} in {timeout:.0f}s")


def jobs_per_attempt(bench: Bench, ns: str, run: str) -> Counter[tuple[str, str]]:
    labels = [j["metadata"]["labels"] for j in _jobs(bench, ns, run)]
    return Counter((x["taskforge.io/step"], x["taskforge.io/attempt"]) for x in labels)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6, help="alternating kill -9 and SIGTERM")
    p.add_argument("--record", action="store_true")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    args.crds, args.profile = ROOT / "crds", False
    results: dict[str, list[tuple[float, float]]] = {"kill -9": [], "SIGTERM": []}
    duplicates = 0
    with workdir(args.keep) as wd:
        bench = Bench(wd, args)
        bench.start()
        try:
            replicas = Replicas(bench, wd)
            ns = f"failover-{uuid.uuid4().hex[:4]}"
            bench.k.namespace(ns)
            bench.k.post(f"{API}/namespaces/{ns}/workflows", {
                "apiVersion": "taskforge.io/v1alpha1", "kind": "Workflow",
                "metadata": {"name": "wf", "namespace": ns},
                "spec": {"steps": [{"name": "a", "log": {"message": "a"}},
                                   {"name": "b", "log": {"message": "b"}, "dependsOn": ["a"]}]}})
            leader = replicas.start()
            replicas.wait_holder(leader[0])
            standby = replicas.start()
            for i in range(args.rounds):
                how = "kill -9" if i % 2 == 0 else "SIGTERM"
                time.sleep(3)  # a few renewals: the standby has seen the Lease change
                ended = time.monotonic()
                if how == "kill -9":
                    os.killpg(leader[1].pid, signal.SIGKILL)
                else:
                    leader[1].stop()
                    ended = time.monotonic()  # the handover starts when the old one is gone
                run = f"r{i}-{uuid.uuid4().hex[:4]}"
                bench.k.create_run(ns, run, "wf")
                took = replicas.wait_holder(standby[0]) - ended
                acted = first_job_at(bench, ns, run) - ended
                results[how].append((took, acted))
                leader[1].stop()  # reaps the killed one
                counts = jobs_per_attempt(bench, ns, run)
                duplicates += sum(n - 1 for n in counts.values())
                print(f"round {i} ({how}): takeover {took:.2f} s, first Job {acted:.2f} s,"
                      f" jobs {dict(counts)}", flush=True)
                leader, standby = standby, replicas.start()
            leader[1].stop()
            standby[1].stop()
        finally:
            bench.cluster.stop()
    rows = ["| how the leader ends | rounds | takeover p50 | takeover max | first Job p50 |"
            " first Job max |", "|---|---|---|---|---|---|"]
    for how, values in results.items():
        if values:
            takes, acts = [v[0] for v in values], [v[1] for v in values]
            rows.append(f"| {how} | {len(values)} | {quantile(takes, 0.5):.2f} s |"
                        f" {max(takes):.2f} s | {quantile(acts, 0.5):.2f} s |"
                        f" {max(acts):.2f} s |")
    worst = max([v[1] for values in results.values() for v in values] or [0.0])
    text = "\n".join(rows) + (
        f"\n\nduplicate Jobs: {duplicates}; target: first Job <= {TARGET_SECONDS:.0f} s"
        f" ({'met' if worst <= TARGET_SECONDS and not duplicates else 'NOT met'});"
        f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(text)
    if args.record:
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        head = (f"\n## Leader failover ({when}, {platform.node()}, {os.cpu_count()} cores;"
                f" bench/bench_failover.py, {args.rounds} rounds, lease 10 s / renew 7 s /"
                f" retry 1 s)\n\n")
        with RESULTS.open("a") as out:
            out.write(head + text + "\n")
    return 0 if worst <= TARGET_SECONDS and not duplicates else 1


if __name__ == "__main__":
    sys.exit(main())
