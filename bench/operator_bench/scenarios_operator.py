"""Scenarios memory, handoff and throughput: what the operator uses and how fast it is."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import threading
import time

from . import memprofile
from .cluster import Bench, Operator, Reconciles, bench_cpu_seconds
from .common import HISTORY, JSON, chain_spec, compact, log_step, ms, quantile, size, verdict
from .kube import RunTracker, Watch
from .report import Outcome, Section, Summary

# --- scenario: memory -----------------------------------------------------------------------------


def scenario_memory(b: Bench) -> Outcome:
    return memory(b, b.args.memory_runs, limit_mib=150, timeout=240)


def scenario_memory_10k(b: Bench) -> Outcome:
    """DESIGN.md's second memory target: 10,000 active runs in <= 1 GiB, and a new run still
    reconciled promptly. Long (creating 10,000 runs alone takes minutes): not in `make test`,
    not in the default scenarios; `bench_operator.py memory10k`."""
    return memory(b, b.args.memory_10k_runs, limit_mib=1024, timeout=2400)


def count(b: Bench, path: str) -> int:
    """How many objects a collection holds, without listing them (10,000 pods are ~50 MB)."""
    page = b.k.get(path, limit="1")
    meta = page.get("metadata") or {}
    return len(page.get("items") or []) + int(meta.get("remainingItemCount") or 0)


class Progress:
    """A line every `every` seconds while runs are created: created (seen by the watch),
    Running, the operator's RSS, the load average."""

    def __init__(self, op: Operator, tracker: RunTracker, n: int, every: float = 30.0) -> None:
        self.op, self.tracker, self.n, self.every = op, tracker, n, every
        self.samples: list[tuple[float, int, int, float]] = []  # (s, Running, RSS KiB, load)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory progress", daemon=True)
        self.t0 = time.monotonic()

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            with contextlib.suppress(Exception):
                with self.tracker.cond:
                    seen = len(self.tracker.phase)
                running, rss = self.tracker.count("Running"), self.op.memory().rss_kib
                load = os.getloadavg()[0]
                self.samples.append((time.monotonic() - self.t0, running, rss, load))
                print(f"  {time.monotonic() - self.t0:6.0f} s: {seen:,} created, "
                      f"{running:,} of {self.n:,} Running, operator RSS {rss / 1024:.0f} MiB, "
                      f"load {load:.1f}", flush=True)


def wait_running(tracker: RunTracker, n: int, timeout: float) -> bool:
    """Until n runs are Running. Polled once a second: a predicate re-counted at every watch
    event is O(runs) per event, O(runs^2) in all (minutes of this process's CPU at 10,000)."""
    deadline = time.monotonic() + timeout
    while tracker.count("Running") < n:
        if time.monotonic() > deadline:
            return False
        time.sleep(1.0)
    return True


def memory(b: Bench, n: int, *, limit_mib: int, timeout: float) -> Outcome:
    ns = "bench-memory"
    agent = b.cluster.agent
    if agent is None:
        raise RuntimeError("the cluster has no agent")
    tracker = RunTracker()
    names = [f"mem-{i:05d}" for i in range(n)]
    dumps = b.workdir / f"memdump-{n}" if b.args.memdump else None
    # A dump stops the event loop for seconds (a deep walk of every cached run): without
    # election, a leader would lose its Lease over it and exit.
    env = ({"TASKFORGE_MEMDUMP": str(dumps), "TASKFORGE_LEADER_ELECTION": "false"}
           if dumps is not None else {})
    profile: list[Section] = []
    try:
        agent.stop()  # from here on pods are never bound: they stay Pending, runs stay Running
        b.k.namespace(ns)
        b.k.workflow(ns, "one", {"steps": [log_step("only")], "history": HISTORY})
        with (b.operator("memory", extra_env=env) as op,
              Watch(b.k, b.runs_path(ns), tracker.handle)):
            time.sleep(1.0)
            idle = op.memory()
            before = memprofile.request_dump(op.pid, dumps, 1) if dumps is not None else None
            t0 = time.monotonic()
            with Progress(op, tracker, n) as progress:
                b.k.create_runs(ns, "one", names, threads=4)
                created_in = time.monotonic() - t0
                if not wait_running(tracker, n, timeout):
                    raise RuntimeError(f"only {tracker.count('Running')} of {n} runs Running")
            running_in = time.monotonic() - t0
            quiet = op.wait_quiet(quiet=3.0, timeout=max(120.0, timeout / 4))
            load_loaded = os.getloadavg()[0]
            # Does a new run still get its reconcile promptly with the cache full? Timed to
            # its Job, not to Running in its status: a launch's status is held for the
            # coalescing window (TASKFORGE_STATUS_COALESCE_SECONDS), and this pod never runs.
            t_probe = time.monotonic()
            b.k.create_run(ns, "probe", "one")
            probed = _job_appears(b, ns, "probe", timeout=60)
            probe_s = time.monotonic() - t_probe if probed else math.nan
            jobs = count(b, f"/apis/batch/v1/namespaces/{ns}/jobs")
            pods = count(b, f"/api/v1/namespaces/{ns}/pods")
            loaded = op.memory()
            cpu = op.cpu_seconds()
            sample = json.loads(b.k.get_raw(f"{b.runs_path(ns)}/{names[0]}"))
            time.sleep(10)  # kopf's per-object workers end after 5 s idle
            later = op.memory()
            if dumps is not None and before is not None:
                after = memprofile.request_dump(op.pid, dumps, 2)
                profile = [*memprofile.sites(dumps / "snapshot-1.tracemalloc",
                                             dumps / "snapshot-2.tracemalloc", n + 1),
                           memprofile.holders(before, after, n + 1),
                           memprofile.parts(before, after, n + 1)]
    finally:
        gone_in = b.delete_namespace(ns, timeout=180 if n <= 1000 else 300)
        agent.launch()
        agent.wait()
    mib = 1024.0
    worst = max(loaded.rss_kib, later.rss_kib)
    ok = worst / mib <= limit_mib
    growth = [f"{s:.0f} s: {r:,} Running, {rss / mib:.0f} MiB, load {ld:.1f}"
              for s, r, rss, ld in progress.samples]
    sec = Section(
        f"Operator memory with {n:,} active runs (target <= {limit_mib} MiB RSS)"
        + (" - under tracemalloc" if dumps is not None else ""),
        ["measure", "value"],
        [
            ["operator RSS, idle after start", f"{idle.rss_kib / mib:.1f} MiB"],
            [f"operator RSS, {n:,} runs Running", f"{loaded.rss_kib / mib:.1f} MiB"],
            ["operator RSS, 10 s later", f"{later.rss_kib / mib:.1f} MiB"],
            ["operator peak RSS (VmHWM)", f"{later.hwm_kib / mib:.1f} MiB"],
            ["RSS per active run", f"{(loaded.rss_kib - idle.rss_kib) / n:.1f} KiB"],
            ["active Jobs / Pending pods", f"{jobs:,} / {pods:,}"],
            ["one run object (JSON) / its managedFields",
             f"{size(compact(sample))} / "
             f"{size(compact(sample['metadata'].get('managedFields')))}"],
            [f"create {n:,} runs (4 creators)", f"{created_in:.1f} s"],
            ["until all Running", f"{running_in:.1f} s"],
            ["operator CPU since start", f"{cpu:.1f} s"],
            ["one more run: created -> its Job created", ms(probe_s)],
            ["target", verdict(ok)],
        ],
        [
            "Node agent stopped, so every step pod stays Pending and every run keeps an "
            "active Job; a fresh operator; measured once all runs were Running and the "
            "operator had made no reconcile for 3 s" + ("" if quiet else " (it never went quiet)"),
            f"load average when all were Running: {load_loaded:.1f}",
            f"namespace deleted afterwards in {gone_in:.1f} s; agent restarted",
            *(["while creating: " + "; ".join(growth)] if len(growth) > 1 else []),
        ],
    )
    return Outcome([sec, *profile], [Summary(f"operator memory, {n:,} active runs",
                                             f"<= {limit_mib} MiB RSS",
                                             f"{worst / mib:.0f} MiB "
                                             f"(peak {later.hwm_kib / mib:.0f})", ok)])


# --- scenario: hand-off ---------------------------------------------------------------------------


class StepClock:
    """When each step's Job appeared and when its pod's container terminated (watch times)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.job_added: dict[tuple[str, str], float] = {}
        self.terminated: dict[tuple[str, str], float] = {}

    @staticmethod
    def _key(obj: JSON) -> tuple[str, str] | None:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        run, step = labels.get("taskforge.io/run"), labels.get("taskforge.io/step")
        return (run, step) if run and step else None

    def on_job(self, now: float, kind: str, obj: JSON) -> None:
        key = self._key(obj)
        if key is not None and kind == "ADDED":
            with self.lock:
                self.job_added.setdefault(key, now)

    def on_pod(self, now: float, kind: str, obj: JSON) -> None:
        key = self._key(obj)
        if key is None or kind == "DELETED":
            return
        statuses = (obj.get("status") or {}).get("containerStatuses") or []
        if any("terminated" in (s.get("state") or {}) for s in statuses):
            with self.lock:
                self.terminated.setdefault(key, now)


def scenario_handoff(b: Bench) -> Outcome:
    steps = 10
    wanted = b.args.handoffs
    runs = math.ceil(wanted / (steps - 1))
    ns = "bench-handoff"
    b.k.namespace(ns)
    b.k.workflow(ns, "chain", chain_spec(steps))
    step_names = [s["name"] for s in chain_spec(steps)["steps"]]
    clock = StepClock()
    tracker = RunTracker()
    walls: list[float] = []
    with (
        b.operator("handoff") as op,
        Watch(b.k, f"/api/v1/namespaces/{ns}/pods", clock.on_pod),
        Watch(b.k, f"/apis/batch/v1/namespaces/{ns}/jobs", clock.on_job),
        Watch(b.k, b.runs_path(ns), tracker.handle),
    ):
        names = [f"warmup-{i}" for i in range(b.args.warmup)] + [f"h-{i:03d}" for i in range(runs)]
        rec_before: Reconciles | None = None
        for name in names:
            if not name.startswith("warmup") and rec_before is None:
                op.wait_quiet(quiet=0.5, timeout=10)
                rec_before = Reconciles.scrape(op)
            t0 = time.monotonic()
            b.k.create_run(ns, name, "chain")
            if not tracker.wait_finished([name], timeout=60):
                raise RuntimeError(f"run {name} did not finish in 60s")
            if not name.startswith("warmup"):
                walls.append(tracker.finished_at[name] - t0)
            if tracker.phase.get(name) != "Succeeded":
                raise RuntimeError(f"run {name} ended {tracker.phase.get(name)}")
        time.sleep(0.3)
        assert rec_before is not None
        rec = Reconciles.scrape(op).minus(rec_before)
    handoffs: list[float] = []
    cycles: list[float] = []
    for name in names:
        if name.startswith("warmup"):
            continue
        for prev, nxt in itertools.pairwise(step_names):
            done = clock.terminated.get((name, prev))
            added = clock.job_added.get((name, nxt))
            if done is not None and added is not None:
                handoffs.append(added - done)
        for step in step_names:
            start = clock.job_added.get((name, step))
            end = clock.terminated.get((name, step))
            if start is not None and end is not None:
                cycles.append(end - start)
    p50, p99 = quantile(handoffs, 0.5), quantile(handoffs, 0.99)
    ok = p50 <= 0.050 and p99 <= 0.250
    sec = Section(
        f"Step hand-off: pod finished -> next Job created "
        f"({len(handoffs)} hand-offs, {runs} runs of a {steps}-step chain)",
        ["measure", "p50", "p90", "p99", "max"],
        [
            ["hand-off (target p50 <= 50 ms, p99 <= 250 ms)", *[
                ms(quantile(handoffs, q)) for q in (0.5, 0.9, 0.99, 1.0)]],
            ["cluster side: Job ADDED -> pod terminated", *[
                ms(quantile(cycles, q)) for q in (0.5, 0.9, 0.99, 1.0)]],
            ["run wall time (create -> Succeeded seen)", *[
                ms(quantile(walls, q)) for q in (0.5, 0.9, 0.99, 1.0)]],
            ["operator reconcile (histogram bucket)", rec.quantile_bound(0.5),
             rec.quantile_bound(0.9), rec.quantile_bound(0.99), ""],
        ],
        [
            f"target: {verdict(ok)}; {b.args.warmup} warm-up run(s) not counted; "
            "runs one after another",
            f"{rec.count:.0f} reconciles ({rec.count / max(1, runs * steps):.1f} per step), "
            f"mean {1000 * rec.seconds / max(1, rec.count):.1f} ms, "
            f"{rec.conflicts:.0f} status conflicts",
        ],
    )
    return Outcome([sec], [Summary(
        "step hand-off", "p50 <= 50 ms, p99 <= 250 ms",
        f"p50 {ms(p50)}, p99 {ms(p99)} (n={len(handoffs)})", ok)])


# --- scenario: throughput -------------------------------------------------------------------------


def scenario_throughput(b: Bench) -> Outcome:
    n = b.args.throughput_runs
    ns = "bench-throughput"
    b.k.namespace(ns)
    b.k.workflow(ns, "one", {"steps": [log_step("only")], "history": HISTORY})
    tracker = RunTracker()
    names = [f"tp-{i:04d}" for i in range(n)]
    op = b.operator("throughput")
    with op, Watch(b.k, b.runs_path(ns), tracker.handle):
        op.wait_quiet(quiet=0.5, timeout=10)
        rec_before = Reconciles.scrape(op)
        cpu0, cluster0, bench0 = op.cpu_seconds(), b.cluster_cpu(), bench_cpu_seconds()
        t0 = time.monotonic()
        pace = getattr(b.args, "throughput_pace", None)  # runs a minute; None: all at once
        created = b.k.create_runs(ns, "one", names, threads=4, pace=pace / 60 if pace else None)
        created_in = time.monotonic() - t0
        finished = tracker.wait_finished(names, timeout=b.args.throughput_timeout)
        t_end = max(tracker.finished_at.values(), default=time.monotonic())
        cpu = op.cpu_seconds() - cpu0
        cluster1, bench_cpu = b.cluster_cpu(), bench_cpu_seconds() - bench0
        rec = Reconciles.scrape(op).minus(rec_before)
    done = [n_ for n_ in names if tracker.phase.get(n_) == "Succeeded"]
    elapsed = t_end - t0
    per_min = len(done) / elapsed * 60 if elapsed > 0 else math.nan
    latencies = [tracker.finished_at[n_] - created[n_] for n_ in names
                 if n_ in tracker.finished_at]
    ok = finished and per_min >= 600
    cluster_rows = [
        [f"CPU: {name}", f"{cluster1.get(name, 0) - start:.1f} s"]
        for name, start in sorted(cluster0.items())
    ]
    sec = Section(
        f"Throughput: {n} single-step runs, instant pods (target >= 600 runs/min)",
        ["measure", "value"],
        [
            ["runs Succeeded", f"{len(done)} of {n}" + ("" if finished else " (TIMED OUT)")],
            ["created in (4 creators)", f"{created_in:.1f} s"],
            ["first create -> last Succeeded", f"{elapsed:.1f} s"],
            ["runs per minute", f"{per_min:.0f}"],
            ["run latency p50 / p99 (create -> Succeeded)",
             f"{ms(quantile(latencies, 0.5))} / {ms(quantile(latencies, 0.99))}"],
            ["operator CPU", f"{cpu:.1f} s ({100 * cpu / elapsed:.0f}% of one core, "
                             f"{1000 * cpu / max(1, len(done)):.0f} ms per run)"],
            ["reconciles per run", f"{rec.count / max(1, len(done)):.1f}"],
            ["reconcile p50 / p99 (histogram bucket)",
             f"{rec.quantile_bound(0.5)} / {rec.quantile_bound(0.99)}"],
            ["reconcile mean", ms(rec.seconds / max(1, rec.count))],
            ["status conflicts", f"{rec.conflicts:.0f}"],
            *cluster_rows,
            ["CPU: this benchmark (watch, creators)", f"{bench_cpu:.1f} s"],
            ["target", verdict(ok)],
        ],
        [f"machine: {os.cpu_count()} CPUs shared by etcd, kube-apiserver, "
         "kube-controller-manager, the node agent, the operator and this benchmark"],
    )
    sections = [sec]
    return Outcome(sections, [Summary("single-step runs per minute", ">= 600",
                                      f"{per_min:.0f}", ok)])


def _job_appears(b: Bench, ns: str, run: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = b.k.get(f"/apis/batch/v1/namespaces/{ns}/jobs",
                        labelSelector=f"taskforge.io/run={run}").get("items")
        if found:
            return True
        time.sleep(0.005)
    return False
