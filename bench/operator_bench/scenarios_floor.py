"""Scenario floor: the operator against the floor controller (floor.py), interleaved.

Both run at once on the same cluster, each in its own namespace (the operator watches only
its own, the floor's Jobs carry other labels), and take turns: per round a batch of 10-step
chain runs one after another (hand-offs), then a burst of single-step runs (runs per minute,
CPU per run), the operator first in even rounds and the floor first in odd ones. The ratios
pool the rounds. Targets (DESIGN.md): hand-off p50 within 5 ms of the floor's, p99 <= 100
ms; single-step runs per minute >= 0.9 of the floor's; operator CPU per single-step run <=
15 ms.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from localcluster.process import ManagedProcess

from .cluster import Bench, Operator, bench_cpu_seconds, process_cpu_seconds
from .common import HISTORY, JSON, ROOT, chain_spec, log_step, ms, quantile, verdict
from .kube import RunTracker, Watch
from .report import Outcome, Section, Summary
from .scenarios_operator import StepClock

STEPS = 10
FLOOR_PREFIX = "floor."


class FloorProcess:
    """`bench/operator_bench/floor.py` as a child process, watching one namespace."""

    def __init__(self, b: Bench, ns: str) -> None:
        argv = [sys.executable, str(Path(__file__).with_name("floor.py")),
                "--kubeconfig", str(b.cluster.kubeconfig), "--namespace", ns]
        self.process = ManagedProcess("floor", argv, b.workdir / "floor.log",
                                      env=dict(os.environ), cwd=ROOT)

    def __enter__(self) -> FloorProcess:
        self.process.start()
        deadline = time.monotonic() + 30
        while "floor: watching" not in self.process.log_tail(20):
            if not self.process.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"floor did not start:\n{self.process.log_tail(40)}")
            time.sleep(0.1)
        time.sleep(0.5)  # its watches list, then stream
        return self

    def __exit__(self, *_: object) -> None:
        self.process.stop(timeout=10)

    def cpu_seconds(self) -> float:
        pid = self.process.pid
        return process_cpu_seconds(pid) if pid is not None else math.nan


def _unfloor(obj: JSON) -> JSON:
    """The floor's labels under the operator's names, so StepClock reads both alike."""
    meta = obj.get("metadata") or {}
    labels = {k.removeprefix(FLOOR_PREFIX): v for k, v in (meta.get("labels") or {}).items()}
    return {**obj, "metadata": {**meta, "labels": labels}}


def _as_run(obj: JSON) -> JSON:
    """A floor run (ConfigMap) as the RunTracker reads a WorkflowRun."""
    phase = (obj.get("data") or {}).get("phase") or "Pending"
    return {"metadata": obj["metadata"], "status": {"phase": phase}}


@dataclass
class Side:
    """One controller's measurements, pooled over the rounds."""

    name: str
    ns: str
    clock: StepClock = field(default_factory=StepClock)
    tracker: RunTracker = field(default_factory=RunTracker)
    chain_runs: list[str] = field(default_factory=list)
    per_min: list[float] = field(default_factory=list)
    cpu_per_run: list[float] = field(default_factory=list)
    create: Callable[[str, int], None] = lambda name, steps: None
    cpu: Callable[[], float] = lambda: math.nan
    # CPU seconds per single-step run of every other process (API server, etcd, agent, ...)
    others: dict[str, list[float]] = field(default_factory=dict)

    def handoffs(self) -> list[float]:
        out = []
        names = [f"s{i:02d}" for i in range(STEPS)]
        for run in self.chain_runs:
            for prev, nxt in itertools.pairwise(names):
                done = self.clock.terminated.get((run, prev))
                added = self.clock.job_added.get((run, nxt))
                if done is not None and added is not None:
                    out.append(added - done)
        return out


def _chains(side: Side, names: list[str]) -> None:
    for name in names:
        side.create(name, STEPS)
        if not side.tracker.wait_finished([name], timeout=60):
            raise RuntimeError(f"{side.name}: chain run {name} did not finish in 60 s")
        if side.tracker.phase.get(name) != "Succeeded":
            raise RuntimeError(f"{side.name}: run {name} ended {side.tracker.phase.get(name)}")
        side.chain_runs.append(name)


def _burst(side: Side, names: list[str], timeout: float,
           others: Callable[[], dict[str, float]]) -> None:
    cpu0, t0, others0 = side.cpu(), time.monotonic(), others()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: side.create(n, 1), names))
    if not side.tracker.wait_finished(names, timeout=timeout):
        raise RuntimeError(f"{side.name}: single-step runs did not finish in {timeout:.0f} s")
    t_end = max(side.tracker.finished_at[n] for n in names)
    done = sum(1 for n in names if side.tracker.phase.get(n) == "Succeeded")
    side.per_min.append(done / (t_end - t0) * 60)
    time.sleep(0.5)  # the last status writes
    side.cpu_per_run.append((side.cpu() - cpu0) / max(1, done))
    for name, cpu in others().items():
        if name in others0:
            side.others.setdefault(name, []).append((cpu - others0[name]) / max(1, done))


def scenario_floor(b: Bench) -> Outcome:
    rounds, chain_runs, burst = b.args.floor_rounds, b.args.floor_chains, b.args.floor_runs
    op_side = Side("operator", "bench-floor-operator")
    fl_side = Side("floor", "bench-floor-floor")
    for side in (op_side, fl_side):
        b.k.namespace(side.ns)
    b.k.workflow(op_side.ns, "chain", chain_spec(STEPS))
    b.k.workflow(op_side.ns, "one", {"steps": [log_step("only")], "history": HISTORY})

    def op_create(name: str, steps: int) -> None:
        b.k.create_run(op_side.ns, name, "chain" if steps > 1 else "one")

    def fl_create(name: str, steps: int) -> None:
        b.k.post(f"/api/v1/namespaces/{fl_side.ns}/configmaps", {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {"floor.taskforge.io/run": "true"}},
            "data": {"steps": str(steps)}})

    op_side.create, fl_side.create = op_create, fl_create
    load: list[float] = []
    op: Operator = b.operator("floor", extra_env={"TASKFORGE_NAMESPACES": op_side.ns})
    with (
        op, FloorProcess(b, fl_side.ns) as floor,
        Watch(b.k, f"/api/v1/namespaces/{op_side.ns}/pods", op_side.clock.on_pod),
        Watch(b.k, f"/apis/batch/v1/namespaces/{op_side.ns}/jobs", op_side.clock.on_job),
        Watch(b.k, b.runs_path(op_side.ns), op_side.tracker.handle),
        Watch(b.k, f"/api/v1/namespaces/{fl_side.ns}/pods",
              lambda t, k, o: fl_side.clock.on_pod(t, k, _unfloor(o))),
        Watch(b.k, f"/apis/batch/v1/namespaces/{fl_side.ns}/jobs",
              lambda t, k, o: fl_side.clock.on_job(t, k, _unfloor(o))),
        Watch(b.k, f"/api/v1/namespaces/{fl_side.ns}/configmaps",
              lambda t, k, o: fl_side.tracker.handle(t, k, _as_run(o))),
    ):
        op_side.cpu, fl_side.cpu = op.cpu_seconds, floor.cpu_seconds
        for side in (op_side, fl_side):  # warm-up: one chain each, not counted
            _chains(side, [f"warm-{side.name}"])
            side.chain_runs.clear()
        op.wait_quiet(quiet=0.5, timeout=10)
        for r in range(rounds):
            order = (op_side, fl_side) if r % 2 == 0 else (fl_side, op_side)
            for side in order:
                _chains(side, [f"h{r}-{i:02d}" for i in range(chain_runs)])
            for side in order:
                _burst(side, [f"t{r}-{i:04d}" for i in range(burst)], timeout=120,
                       others=lambda: {**b.cluster_cpu(), "benchmark": bench_cpu_seconds()})
                time.sleep(1.0)
            load.append(os.getloadavg()[0])
    return _report(op_side, fl_side, rounds=rounds, chains=chain_runs, burst=burst, load=load)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _report(op: Side, fl: Side, *, rounds: int, chains: int, burst: int,
            load: list[float]) -> Outcome:
    oh, fh = op.handoffs(), fl.handoffs()
    o50, o99, f50, f99 = (quantile(oh, 0.5), quantile(oh, 0.99), quantile(fh, 0.5),
                          quantile(fh, 0.99))
    o_rpm, f_rpm = sum(op.per_min) / len(op.per_min), sum(fl.per_min) / len(fl.per_min)
    o_cpu = sum(op.cpu_per_run) / len(op.cpu_per_run)
    f_cpu = sum(fl.cpu_per_run) / len(fl.cpu_per_run)
    ok_p50, ok_p99 = o50 - f50 <= 0.005, o99 <= 0.100
    ok_rpm, ok_cpu = o_rpm >= 0.9 * f_rpm, o_cpu <= 0.015
    rows = [
        ["hand-off p50", ms(o50), ms(f50), f"{o50 / f50:.2f}x (+{ms(o50 - f50)})",
         "within 5 ms of the floor", verdict(ok_p50)],
        ["hand-off p99", ms(o99), ms(f99), f"{o99 / f99:.2f}x", "<= 100 ms", verdict(ok_p99)],
        ["single-step runs per minute", f"{o_rpm:.0f}", f"{f_rpm:.0f}", f"{o_rpm / f_rpm:.2f}",
         ">= 0.9 of the floor", verdict(ok_rpm)],
        ["CPU per single-step run", f"{1000 * o_cpu:.1f} ms", f"{1000 * f_cpu:.1f} ms",
         f"{o_cpu / f_cpu:.1f}x", "operator <= 15 ms", verdict(ok_cpu)],
    ]
    per_round = [
        [f"round {i}", " / ".join(f"{x:.0f}" for x in (op.per_min[i], fl.per_min[i])),
         " / ".join(f"{1000 * x:.1f}" for x in (op.cpu_per_run[i], fl.cpu_per_run[i])),
         f"{load[i]:.2f}"]
        for i in range(rounds)
    ]
    names = sorted(set(op.others) & set(fl.others))
    cpu_rows = [[name, f"{1000 * _mean(op.others[name]):.1f}",
                 f"{1000 * _mean(fl.others[name]):.1f}"] for name in names]
    cpu_rows.append(["controller (operator / floor)", f"{1000 * o_cpu:.1f}",
                     f"{1000 * f_cpu:.1f}"])
    o_all = sum(_mean(op.others[n]) for n in names) + o_cpu
    f_all = sum(_mean(fl.others[n]) for n in names) + f_cpu
    cpu_rows.append(["**all**", f"**{1000 * o_all:.1f}**", f"**{1000 * f_all:.1f}**"])
    cpu_sec = Section(
        "CPU per single-step run by process, ms (the bursts above; the other side idles then)",
        ["process", "operator's runs", "floor's runs"], cpu_rows,
        ["the machine's two cores bound runs per minute once every process's CPU per run adds "
         "up to 2 s per second: this table says whose CPU each side's runs cost"],
    )
    sec = Section(
        f"Operator vs the floor controller, interleaved ({rounds} rounds; per round "
        f"{chains} chain runs of {STEPS} steps and {burst} single-step runs each)",
        ["measure", "operator", "floor", "ratio", "target", "verdict"], rows,
        [f"hand-offs: operator n={len(oh)}, floor n={len(fh)}; the floor is "
         "bench/operator_bench/floor.py (one pod watch creating the next Job, Jobs built by "
         "the operator's own build_job, instant image); runs per minute from the first create "
         "to the last run seen done (status.phase / the floor's done mark), 4 creators",
         "per round (runs/min operator / floor; CPU ms per run operator / floor; load "
         "average): " + "; ".join(f"{r[0]}: {r[1]}; {r[2]}; load {r[3]}" for r in per_round)],
    )
    summary = [
        Summary("hand-off p50 vs the floor", "within 5 ms",
                f"{ms(o50)} vs {ms(f50)} (+{ms(o50 - f50)})", ok_p50),
        Summary("hand-off p99", "<= 100 ms", f"{ms(o99)} (floor {ms(f99)})", ok_p99),
        Summary("single-step runs/min vs the floor", ">= 0.9",
                f"{o_rpm:.0f} vs {f_rpm:.0f} ({o_rpm / f_rpm:.2f})", ok_rpm),
        Summary("operator CPU per single-step run", "<= 15 ms", f"{1000 * o_cpu:.1f} ms",
                ok_cpu),
    ]
    return Outcome([sec, cpu_sec], summary)
