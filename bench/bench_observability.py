"""What the metrics and log bookkeeping of issue 16 cost: single-step throughput, A/B.

One local cluster; the operator alternates between two code trees, A then B then B then A
(ABBA per pair of rounds, so drift in the machine's load hits both alike): `--before`, a
tree of the code without the bookkeeping (e.g. `git archive <commit> | tar -x -C DIR`), and
`--after` (default: this working tree), each run through PYTHONPATH. Each round: a fresh
namespace, `--runs` single-step runs of the instant image created by 4 creators, runs per
minute from the first create to the last Succeeded, and the operator's CPU time per run.
Prints each round, the medians and the load average (other helpers share the machine).

    .venv/bin/python bench/bench_observability.py --before /tmp/before --rounds 4
    .venv/bin/python bench/bench_observability.py --in-process
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))

from localcluster.process import free_port

from bench.operator_bench.cluster import Bench
from bench.operator_bench.common import HISTORY, ROOT, log_step
from bench.operator_bench.kube import RunTracker, Watch


def one_round(b: Bench, label: str, i: int, runs: int, env: dict[str, str]) -> tuple[float, float]:
    ns = f"obs-{label.lower()}-{i}"
    b.k.namespace(ns)
    b.k.workflow(ns, "one", {"steps": [log_step("only")], "history": HISTORY})
    tracker = RunTracker()
    names = [f"r-{j:04d}" for j in range(runs)]
    old_ports: dict[str, str] = {}
    if label == "A":  # code from before one HTTP server: /metrics on its own port
        port = free_port()
        old_ports = {"TASKFORGE_METRICS_PORT": str(port), "TASKFORGE_WEBHOOK_PORT":
                     str(free_port()), "TASKFORGE_HEALTH_PORT": str(free_port())}
    op = b.operator(f"{label}{i}", extra_env=env | old_ports)
    if old_ports:  # prometheus_client's server answers every path, /healthz too
        op.http_port = int(old_ports["TASKFORGE_METRICS_PORT"])
    with op, Watch(b.k, b.runs_path(ns), tracker.handle):
        op.wait_quiet(quiet=0.5, timeout=10)
        cpu0 = op.cpu_seconds()
        t0 = time.monotonic()
        b.k.create_runs(ns, "one", names, threads=4)
        if not tracker.wait_finished(names, timeout=300):
            raise RuntimeError(f"round {label}{i}: runs did not finish")
        elapsed = max(tracker.finished_at.values()) - t0
        cpu = op.cpu_seconds() - cpu0
    return runs / elapsed * 60, 1000 * cpu / runs


def in_process(n: int = 3000) -> None:
    """The bookkeeping alone: CPU of `runlog.record` for a one-step run's start and end,
    against the two `engine.plan` calls of the same run, interleaved (no cluster)."""
    sys.path.insert(0, str(ROOT / "tests" / "engine"))
    kit = importlib.import_module("enginekit")  # tests/engine's builders of plan() facts
    at, facts, job, step, workflow = kit.at, kit.facts, kit.job, kit.step, kit.workflow
    from taskforge import logs  # noqa: PLC0415
    from taskforge.engine.planner import plan  # noqa: PLC0415
    from taskforge.handlers import runlog  # noqa: PLC0415

    with open(os.devnull, "w") as sink:
        logs.setup("text", "INFO", stream=sink)
        spec = workflow(step("a"))
        done = job("a", 1, "Succeeded", message=kit.result_json(True), finished=at(1))
        body = {"spec": {"workflowRef": {"name": "wf"}}}
        planning = recording = 0.0
        for _ in range(n):
            t0 = time.process_time()
            first = plan(facts(spec, None, [], now=at(0))).status
            last = plan(facts(spec, first, [done], now=at(1.2))).status
            t1 = time.process_time()
            with logs.run_fields(namespace="ns", workflow="wf", run="r"):
                runlog.record("ns", body, None, first, kit.T0)
                runlog.record("ns", body, first, last, kit.T0)
            recording += time.process_time() - t1
            planning += t1 - t0
    print(f"per one-step run: plan {planning / n * 1e6:.0f} us CPU, bookkeeping"
          f" {recording / n * 1e6:.0f} us CPU ({recording / planning:.2f} of plan)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--in-process", action="store_true",
                   help="only the bookkeeping's CPU per run against plan()'s, no cluster")
    p.add_argument("--before", type=Path, help="code tree without the change")
    p.add_argument("--after", type=Path, help="code tree with it (default: this working tree)")
    p.add_argument("--rounds", type=int, default=4, help="rounds of each (even: ABBA)")
    p.add_argument("--runs", type=int, default=300)
    args = p.parse_args()
    if args.in_process:
        in_process()
        return 0
    if args.before is None:
        p.error("--before is required (or --in-process)")
    before = args.before.resolve()
    after = args.after.resolve() if args.after else ROOT
    env_a, env_b = ({"PYTHONPATH": os.pathsep.join(str(tree / d) for d in (
        "operator", "executor", "hack"))} for tree in (before, after))
    results: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="bench-obs-") as tmp:
        bench = Bench(Path(tmp), argparse.Namespace(crds=ROOT / "crds", profile=False))
        bench.start()
        try:
            for i in range(args.rounds):
                order = ("A", "B") if i % 2 == 0 else ("B", "A")
                for label in order:
                    per_min, cpu_ms = one_round(bench, label, i, args.runs,
                                                env_a if label == "A" else env_b)
                    results[label].append((per_min, cpu_ms))
                    loads.append(os.getloadavg()[0])
                    print(f"round {i} {label}: {per_min:.0f} runs/min, {cpu_ms:.1f} ms CPU/run,"
                          f" load {loads[-1]:.1f}", flush=True)
        finally:
            bench.cluster.stop()
    med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v))
           for k, v in results.items()}
    print(f"\n| variant | runs/min (median of {args.rounds}) | operator CPU ms/run |")
    print("|---|---|---|")
    for k, name in (("A", f"before ({before})"), ("B", f"after ({after})")):
        print(f"| {name} | {med[k][0]:.0f} | {med[k][1]:.1f} |")
    print(f"\nthroughput B/A: {med['B'][0] / med['A'][0]:.3f};"
          f" CPU per run B/A: {med['B'][1] / med['A'][1]:.3f};"
          f" load average 1 min: {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
