"""Every kube-apiserver request and watch event a burst of 1-step runs costs (issue 14).

`make bench`'s `writes` counts writes only; this counts every verb (reads and watches too),
the watch events the API server sent, the operator's reconciles, and the CPU of each
process per run, for one burst of N single-step runs of instant pods (4 creators). Run it
with TASKFORGE_STATUS_COALESCE_SECONDS=0 and =3 to see what the held status saves.

Usage: .venv/bin/python bench/bench_requests.py [--runs N] [--profile]
  --profile   py-spy the operator during the burst (100 Hz) and print its top frames
"""

from __future__ import annotations

import argparse
import collections
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))

from bench.bench_operator import parse_args as operator_args
from bench.operator_bench.apiserver_metrics import apiserver_requests, apiserver_watch_events
from bench.operator_bench.cluster import Bench, Reconciles, workdir
from bench.operator_bench.common import HISTORY, log_step
from bench.operator_bench.kube import RunTracker, Watch

Snapshot = tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]


def snapshot(b: Bench) -> Snapshot:
    text = b.k.metrics()
    return apiserver_requests(text), apiserver_watch_events(text)


def top_frames(raw: Path, limit: int = 30) -> None:
    own: Counter[str] = collections.Counter()
    inclusive: Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        total += int(n)
        own[frames[-1]] += int(n)
        for frame in set(frames):
            inclusive[frame] += int(n)
    print(f"py-spy samples: {total}")
    for title, counter in (("self", own), ("inclusive", inclusive)):
        print(f"--- {title}")
        for frame, count in counter.most_common(limit):
            print(f"{100 * count / total:5.1f}% {frame[:140]}")


def step_latencies(b: Bench, ns: str) -> list[float]:
    """Launch to end of each run's step, from its status (seconds)."""
    def at(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    out = []
    for item in b.k.get(f"/apis/taskforge.io/v1alpha1/namespaces/{ns}/workflowruns")["items"]:
        st = item["status"]["steps"]["only"]
        out.append((at(st["finishedAt"]) - at(st["startedAt"])).total_seconds())
    return sorted(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--crds", type=Path, help="install the CRDs from this directory instead")
    args = p.parse_args()
    n = args.runs
    with workdir(False) as wd:
        b = Bench(wd, operator_args(["--crds", str(args.crds)] if args.crds else []))
        b.start()
        try:
            with b.operator("requests") as op:
                ns = "bench-requests"
                b.k.namespace(ns)
                b.k.workflow(ns, "one", {"steps": [log_step("only")], "history": HISTORY})
                tracker = RunTracker()
                names = [f"one-{i:04d}" for i in range(n)]
                with Watch(b.k, b.runs_path(ns), tracker.handle):
                    op.wait_quiet(quiet=1.0, timeout=20)
                    time.sleep(2)
                    req0, watch0 = snapshot(b)
                    cpu0, op0, rec0 = b.cluster_cpu(), op.cpu_seconds(), Reconciles.scrape(op)
                    spy = None
                    raw = wd / "operator.pyspy"
                    if args.profile:
                        spy = subprocess.Popen(
                            [str(Path(sys.executable).parent / "py-spy"), "record", "-p",
                             str(op.pid), "-r", "100", "--format", "raw", "-o", str(raw),
                             "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        time.sleep(1.0)
                    t0 = time.monotonic()
                    b.k.create_runs(ns, "one", names, threads=4)
                    if not tracker.wait_finished(names, timeout=300):
                        raise SystemExit("the runs did not finish in 300 s")
                    wall = time.monotonic() - t0
                    if spy is not None:
                        spy.send_signal(signal.SIGINT)
                        spy.wait(30)
                    op.wait_quiet(quiet=1.0, timeout=30)
                    time.sleep(2)
                    req1, watch1 = snapshot(b)
                    cpu1, op1 = b.cluster_cpu(), op.cpu_seconds()
                    rec = Reconciles.scrape(op).minus(rec0)
                print(f"{n} runs in {wall:.1f} s ({60 * n / wall:.0f} runs/min), load "
                      f"{Path('/proc/loadavg').read_text().split()[0]}")
                print("requests per run (every verb):")
                for (verb, res), v in sorted((req1 - req0).items(), key=lambda kv: -kv[1]):
                    if v / n >= 0.01:
                        print(f"  {verb:8s} {res:40s} {v / n:6.2f}")
                print("watch events sent per run:")
                for (kind, group), v in sorted((watch1 - watch0).items(), key=lambda kv: -kv[1]):
                    if v / n >= 0.01:
                        print(f"  {kind:30s} {group:20s} {v / n:6.2f}")
                lat = step_latencies(b, ns)
                print(f"step launch -> end (s): p50 {lat[len(lat) // 2]:.2f} "
                      f"p90 {lat[9 * len(lat) // 10]:.2f} max {lat[-1]:.2f}")
                print(f"operator reconciles per run {rec.count / n:.2f}")
                cpu = {k: round((cpu1[k] - cpu0.get(k, 0.0)) * 1000 / n, 1) for k in cpu1}
                cpu["operator"] = round((op1 - op0) * 1000 / n, 1)
                print("CPU ms per run:", json.dumps(cpu))
                if args.profile and raw.exists():
                    top_frames(raw)
        finally:
            b.cluster.stop()


if __name__ == "__main__":
    main()
