"""Benchmark of the operator on the local control plane: the DESIGN.md targets that need a cluster.

Starts its own LocalCluster (temp dir, loopback only), installs the CRDs and runs the real
operator (`python -m taskforge.handlers.main`) as a child process with
TASKFORGE_EXECUTOR_IMAGE=taskforge.io/bench-instant, so every step pod "exits 0" the moment the
node agent sees it: what is measured is the operator and the control plane, not the executor.
Scenarios (in this order, all by default):

  floor       the operator against the floor controller (operator_bench/floor.py: one pod
              watch creating the next Job), both running, interleaved rounds of 10-step
              chains and single-step bursts; prints the ratios (hand-off p50/p99, runs per
              minute, CPU per run) against the DESIGN.md targets. What `make bench` runs.

  memory      operator RSS with 1,000 active runs. The node agent is stopped for this one, so
              every step pod stays Pending (unscheduled) and every run stays Running with an
              active Job and a pod, the way runs wait on a busy cluster. RSS and VmHWM come from
              /proc/PID/status of a freshly started operator once all runs are Running and the
              operator has gone quiet. The namespace is then deleted and the agent restarted.
  handoff     step hand-off latency: runs of a 10-step chain of log steps, one after another
              (plus one warm-up run). One process watches pods and Jobs in the namespace; a
              hand-off is the time from the watch event showing step N's container terminated
              to the ADDED event of step N+1's Job (both seen through the same kind of watch,
              so both carry the same watch delay).
  throughput  300 single-step runs created by 4 concurrent creators; runs/min from the first
              create until a watch on runs has seen every one Succeeded; operator CPU time.
  writes      API writes per step from kube-apiserver's own `apiserver_request_total` counters
              (scraped with the admin client cert) around batches of runs: a 10-step chain and
              single-step runs, with step Events on and off (TASKFORGE_STEP_EVENTS). Writes are
              split into the operator's, the benchmark's own (creating runs) and the cluster's
              (job controller, node agent: pods, pods/binding, jobs/status, their events...).
              Events are attributed by their reporting component.
  memory10k   (only when named) memory with 10,000 active runs (target <= 1 GiB), and how soon
              one more run is reconciled with the cache that full. Takes a long time.
  size        a 1,000-step run (1 root, 989 parallel workers, 10 collectors) run to the end; the
              serialized size of the run object as the API server returns it (and stores it),
              with a breakdown, and the time the run took.

The bench workflows keep up to 1,000 finished runs (`history.successfulRuns`), so run-history
cleanup (one DELETE per finished run past the limit) does not happen inside a measurement.

Usage: .venv/bin/python bench/bench_operator.py [SCENARIO ...] [--record] [--keep] [--profile]
  --record   append a dated section with the tables to bench/RESULTS.md
  --keep     keep the temp dir (cluster and operator logs) and print where it is
  --profile  run the operator under cProfile (all scenarios but memory); print its top functions
  --memdump  memory scenarios: the operator under tracemalloc, dumped idle and loaded; prints
             the memory per active run by allocation site and by holder (memprofile.py)
Exit status: 0 when every scenario ran (targets missed or not), 1 when one failed to run,
2 with --strict when a target was missed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

# The scenarios live in the package bench/operator_bench, imported as `bench.operator_bench`
# (the name mypy gives it too): the repository root goes at the end of the path, after the
# standard library and the venv, so none of its directories can shadow those.
sys.path.append(str(Path(__file__).resolve().parents[1]))

from bench.operator_bench.cluster import (
    Bench,
    machine_busy_seconds,
    own_and_children_cpu_seconds,
    workdir,
)
from bench.operator_bench.common import EXTRA_SCENARIOS, ROOT, SCENARIOS
from bench.operator_bench.report import Outcome, machine, report
from bench.operator_bench.scenarios_apiserver import scenario_size, scenario_writes
from bench.operator_bench.scenarios_floor import scenario_floor
from bench.operator_bench.scenarios_operator import (
    scenario_handoff,
    scenario_memory,
    scenario_memory_10k,
    scenario_throughput,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                   help=f"which to run (default: all): {', '.join(SCENARIOS)}; only when "
                        f"named: {', '.join(EXTRA_SCENARIOS)}")
    p.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    p.add_argument("--keep", action="store_true", help="keep the temp dir with all logs")
    p.add_argument("--profile", action="store_true",
                   help="run the operator under cProfile (not for memory); print its top functions")
    p.add_argument("--strict", action="store_true", help="exit 2 when a target is missed")
    p.add_argument("--crds", type=Path, default=ROOT / "crds",
                   help="install the CRDs from this directory (to try a schema change)")
    p.add_argument("--handoffs", type=int, default=200, help="hand-offs to measure (>= 200)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up runs before the hand-offs")
    p.add_argument("--throughput-runs", type=int, default=300)
    p.add_argument("--throughput-timeout", type=float, default=150.0)
    p.add_argument("--memory-runs", type=int, default=1000)
    p.add_argument("--memory-10k-runs", type=int, default=10_000)
    p.add_argument("--memdump", action="store_true",
                   help="memory scenarios: run the operator under tracemalloc and print where "
                        "each active run's memory goes (slower; RSS then includes tracing)")
    p.add_argument("--writes-chain-runs", type=int, default=10)
    p.add_argument("--writes-single-runs", type=int, default=30)
    p.add_argument("--size-timeout", type=float, default=180.0)
    p.add_argument("--floor-rounds", type=int, default=2, help="interleaved rounds (floor)")
    p.add_argument("--floor-chains", type=int, default=10,
                   help="10-step chain runs per controller per round (floor)")
    p.add_argument("--floor-runs", type=int, default=150,
                   help="single-step runs per controller per round (floor)")
    args = p.parse_args(argv)
    unknown = set(args.scenarios) - set(SCENARIOS) - set(EXTRA_SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from "
                f"{SCENARIOS + EXTRA_SCENARIOS}")
    return args


RUNNERS: dict[str, Callable[[Bench], Outcome]] = {
    "floor": scenario_floor,
    "memory": scenario_memory,
    "memory10k": scenario_memory_10k,
    "handoff": scenario_handoff,
    "throughput": scenario_throughput,
    "writes": scenario_writes,
    "size": scenario_size,
}



def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = [s for s in SCENARIOS + EXTRA_SCENARIOS
              if s in args.scenarios or (not args.scenarios and s in SCENARIOS)]
    started = datetime.now(UTC)
    t0 = time.monotonic()
    outcomes: dict[str, Outcome] = {}
    failed: list[str] = []
    load_before = os.getloadavg()[0]
    busy0, ours0 = machine_busy_seconds(), own_and_children_cpu_seconds()
    with workdir(args.keep) as tmp:
        bench = Bench(tmp, args)
        try:
            bench.start()
            for name in chosen:
                print(f"== {name}", flush=True)
                s0 = time.monotonic()
                try:
                    outcome = RUNNERS[name](bench)
                except Exception as exc:
                    traceback.print_exc()
                    failed.append(f"{name}: {exc}")
                    continue
                outcomes[name] = outcome
                for section in outcome.sections:
                    print(section.render(), flush=True)
                print(f"({name} took {time.monotonic() - s0:.0f} s)\n", flush=True)
            info = machine(bench)
        finally:
            bench.cluster.stop()
    wall = time.monotonic() - t0
    busy = machine_busy_seconds() - busy0
    others = max(0.0, busy - (own_and_children_cpu_seconds() - ours0))
    report(outcomes, failed, info, started=started, wall=wall, others=others,
           load_before=load_before, record_results=args.record)
    if failed:
        return 1
    if args.strict and any(not s.ok for o in outcomes.values() for s in o.summary):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
