"""Benchmark of the run archive (issue 18; docs/archive.md). Three parts; list and
throughput by default:

  list        a real PostgreSQL 15 (hack/localcluster/postgres_server.py) with 10,000
              archived runs of one namespace (3 attempts and 3 logs each); the time of
              ArchiveReader.list_runs for all 10,000 (target < 200 ms), of a first page of
              50, of get_run and of logs. Median of 7, after a warm-up.
  throughput  the operator bench's throughput scenario (bench/operator_bench, instant pods)
              run ABBA: A without the archive, B with TASKFORGE_ARCHIVE_URL; runs per minute
              and the CPU per run of every process (operator, API server, etcd,
              controller-manager, node agent, PostgreSQL's postmaster and backends, this
              benchmark). Target: the archive costs < 5% of single-step throughput. On 2
              cores the total CPU per run bounds runs per minute, and it is far less
              sensitive than runs per minute to what else the machine runs. One warm-up
              round first (--warmup), not counted; every round's window ends 5 s after its
              last run (the cluster finishing its Jobs, in both arms alike). --pace N
              creates the runs at N a minute instead of all at once: a saturated round
              feeds on itself (a slow one lets status holds expire and the job controller
              fall behind, which makes it slower), so its rounds differ by +-15% by chance
              (--control, an A/A run, shows how much), while below saturation CPU per run
              is steady and B - A is the archive's own cost.
  logread     what one of the archive's pods/log reads costs each process, against a GET.

Usage: .venv/bin/python bench/bench_archive.py [list] [logread] [throughput] [--runs N]
       [--rounds N] [--pace RUNS_PER_MIN] [--control] [--warmup N] [--reads N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1]))

from localcluster.postgres_server import PostgresServer
from taskforge.adapters import archive_db
from taskforge.adapters.archive_reader import ArchiveReader
from taskforge.adapters.archive_records import log_record, redactor

from bench.operator_bench.apiserver_metrics import apiserver_requests, apiserver_watch_events
from bench.operator_bench.cluster import (
    Bench,
    Operator,
    bench_cpu_seconds,
    machine_busy_seconds,
    postgres_cpu_seconds,
    workdir,
)
from bench.operator_bench.logread import bench_logread
from bench.operator_bench.scenarios_operator import scenario_throughput

RUNS = 10_000
LIVE_LOOKUP_SECONDS = 32.0
SETTLE_SECONDS = 5.0


async def _fill(url: str, runs: int) -> None:
    conn = await archive_db.connect(url)
    try:
        await archive_db.migrate(conn)
        start = datetime(2026, 1, 1, tzinfo=UTC)
        plain = redactor([])
        batch: list[tuple[str, dict[str, Any]]] = []
        for i in range(runs):
            uid = str(uuid.uuid4())
            t = start + timedelta(minutes=i)
            batch.append(("run", {
                "uid": uid, "namespace": "bench", "name": f"run-{i:05d}",
                "workflow": f"wf-{i % 20}", "workflow_generation": 1,
                "phase": "Failed" if i % 10 == 0 else "Succeeded", "trigger": "schedule",
                "params": {"i": i}, "pinned_spec": {"steps": [{"name": f"s{j}"} for j in range(3)]},
                "created_at": t, "started_at": t, "finished_at": t + timedelta(seconds=30)}))
            for j in range(3):
                batch.append(("attempt", {
                    "run_uid": uid, "step": f"s{j}", "attempt": 1, "started_at": t,
                    "finished_at": t + timedelta(seconds=10), "exit_code": 0,
                    "reason": "Succeeded", "outputs": {"n": j}}))
                batch.append(log_record(uid, f"s{j}", 1, pod=f"p-{i}-{j}",
                                        raw=f"line of step {j}\n".encode() * 20, redact=plain))
            if len(batch) >= 2000:
                await archive_db.write(conn, batch)
                batch = []
        if batch:
            await archive_db.write(conn, batch)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def _time(url: str, what: Callable[[ArchiveReader], Awaitable[Any]],
                repeat: int = 7) -> tuple[float, float, Any]:
    """Median wall time and median CPU time of this process (the reader's side), in ms."""
    async with ArchiveReader(url) as reader:
        result = await what(reader)  # warm-up
        times, cpus = [], []
        for _ in range(repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            result = await what(reader)
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    return statistics.median(times) * 1000, statistics.median(cpus) * 1000, result


def bench_list(runs: int) -> list[str]:
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="taskforge-bench-archive-")))
    server.start()
    try:
        t0 = time.monotonic()
        asyncio.run(_fill(server.url, runs))
        filled = time.monotonic() - t0
        rows = []
        for label, what, check in (
            (f"list_runs, all {runs:,}", lambda r: r.list_runs(["bench"], limit=runs),
             lambda x: len(x) == runs),
            ("list_runs, first page of 50", lambda r: r.list_runs(["bench"], limit=50),
             lambda x: len(x) == 50),
            ("list_runs, one workflow, 50 Failed", lambda r: r.list_runs(
                ["bench"], workflow="wf-0", phases=["Failed"], limit=50), bool),
            ("get_run (with 3 attempts)", lambda r: r.get_run("bench", "run-05000"),
             lambda x: x is not None and len(x["attempts"]) == 3),
            ("logs (3 steps, decompressed)", lambda r: r.logs("bench", "run-05000"),
             lambda x: len(x) == 3),
        ):
            ms, cpu, result = asyncio.run(_time(server.url, what))
            assert check(result), label
            rows.append(f"| {label} | {ms:.1f} ms | {cpu:.1f} ms |")
        plan = server.psql(
            "EXPLAIN (ANALYZE, FORMAT JSON) SELECT coalesce(json_agg(t), '[]'::json) FROM ("
            "SELECT uid, name, workflow, phase, to_char(finished_at AT TIME ZONE 'UTC',"
            " 'YYYY-MM-DD') FROM archived_runs WHERE namespace = 'bench'"
            " ORDER BY finished_at DESC NULLS LAST LIMIT 10000) t", "postgres")
        server_ms = json.loads(plan)[0]["Execution Time"]
        rows.append(f"| server-side execution, all {runs:,} (EXPLAIN ANALYZE) | {server_ms:.1f} ms"
                    " | |")
        load = Path("/proc/loadavg").read_text().split()[0]
        return [f"Archive reads: PostgreSQL 15 (fsync off), {runs:,} runs + {3 * runs:,}"
                f" attempts and logs, filled in {filled:.1f} s; median of 7; load {load}",
                "| query | wall | reader CPU |", "|---|---|---|", *rows]
    finally:
        server.cleanup()


def _requests(b: Bench) -> tuple[Counter[str], Counter[str]]:
    """kube-apiserver's requests so far, by verb and resource (all clients), and the watch
    events it has sent, by kind."""
    text = b.k.metrics()
    events: Counter[str] = Counter()
    for (kind, _), n in apiserver_watch_events(text).items():
        events[kind] += n
    return (Counter({f"{verb} {res}": n for (verb, res), n in apiserver_requests(text).items()}),
            events)


@dataclass
class Round:
    arm: str
    per_min: float
    done: int
    cpu: dict[str, float]  # ms of CPU per run, by process
    load: str


def _archived(server: PostgresServer) -> int:
    return int(server.psql("SELECT count(*) FROM archived_runs"))


def bench_throughput(runs: int, rounds: int, control: bool = False,
                     pace: float | None = None, warmup: int = 1) -> list[str]:
    """ABBA rounds of the operator bench's throughput scenario; per round runs per minute
    and the CPU each process spent per run (operator, API server, etcd, controller-manager,
    node agent, PostgreSQL, this benchmark). CPU per run depends far less on what else the
    machine runs than runs per minute do; on this 2-core machine the total bounds them."""
    server = None

    class ArchiveBench(Bench):
        archive_url: str | None = None
        expect_archived = 0
        current: Operator | None = None

        def __init__(self, wd: Path, args: argparse.Namespace) -> None:
            super().__init__(wd, args)
            self.snapshots: list[dict[str, float]] = []

        def operator(self, name: str, **kwargs: Any) -> Operator:
            if self.archive_url:
                kwargs["extra_env"] = {"TASKFORGE_ARCHIVE_URL": self.archive_url}
            self.current = super().operator(name, **kwargs)
            return self.current

        def cluster_cpu(self) -> dict[str, float]:
            """The scenario calls this right before its first create and right after its
            last run is seen done. The second call first lets the cluster settle for
            SETTLE_SECONDS in both arms, and for B also waits (10 s at most) until the
            archive holds every run, so the last attempts' captures and the last batch are
            counted. Both arms alike: the job controller finishes the last Jobs after
            their runs are done (pod finalizers, Job status), and a window that only B
            extended counted that trailing work in B alone (+0.9 requests a run)."""
            if len(self.snapshots) % 2 == 1:
                settled = time.monotonic() + SETTLE_SECONDS
                if self.archive_url and server is not None:
                    deadline = time.monotonic() + 10
                    while (_archived(server) < self.expect_archived
                           and time.monotonic() < deadline):
                        time.sleep(0.2)
                time.sleep(max(0.0, settled - time.monotonic()))
            out = super().cluster_cpu()
            if self.current is not None:
                out["operator"] = self.current.cpu_seconds()
            if server is not None and server.pid is not None:
                out["postgres"] = postgres_cpu_seconds(server.pid)
            out["benchmark"] = bench_cpu_seconds()
            out["machine (all processes)"] = machine_busy_seconds()
            self.snapshots.append(out)
            return out

    args = argparse.Namespace(throughput_runs=runs, throughput_timeout=300.0, profile=False,
                              throughput_pace=pace,
                              crds=Path(__file__).resolve().parents[1] / "crds")
    done_rounds: list[Round] = []
    with workdir(False) as wd:
        server = PostgresServer(wd / "postgres")
        server.start()
        b = ArchiveBench(wd, args)
        try:
            b.start()
            # A first round, not counted: a new cluster's controller-manager discovers the
            # CRDs in its first half minute (its garbage collector then GETs the runs its
            # Jobs name, ~0.3 a run), which would otherwise fall in round 2, always a B.
            order = ("-",) * warmup + ("A", "B", "B", "A") * max(1, rounds // 2)
            for i, arm in enumerate(order):
                b.archive_url = server.url_for("postgres") if arm == "B" and not control else None
                b.expect_archived = 0 if control else runs * sum(
                    1 for x in order[:i + 1] if x == "B")
                b.snapshots.clear()
                requests0, events0 = _requests(b)
                outcome = scenario_throughput(b)
                requests, events = _requests(b)
                requests, events = requests - requests0, events - events0
                rows = {r[0]: r[1] for r in outcome.sections[0].rows}
                per_min = float(rows["runs per minute"])
                done_m = re.match(r"(\d+) of", rows["runs Succeeded"])
                done = int(done_m[1]) if done_m else 0
                before, after = b.snapshots[0], b.snapshots[1]
                cpu = {name: 1000 * (after[name] - before[name]) / max(1, done)
                       for name in after if name in before}
                load = Path("/proc/loadavg").read_text().split()[0]
                if arm != "-":
                    done_rounds.append(Round(arm, per_min, done, cpu, load))
                ours = sum(v for k, v in cpu.items() if k != "machine (all processes)")
                print(f"round {i + 1} ({arm}): {per_min:.0f} runs/min, operator"
                      f" {cpu['operator']:.1f} ms CPU/run, all ours {ours:.1f} ms, machine"
                      f" {cpu['machine (all processes)']:.1f} ms, load {load}", flush=True)
                print("  " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items())),
                      flush=True)
                print(f"  reconciles per run {rows.get('reconciles per run')}, status conflicts"
                      f" {rows.get('status conflicts')}; API requests per run (round, operator"
                      f" start and stop included) {sum(requests.values()) / max(1, done):.2f}: "
                      + ", ".join(f"{k} {v / max(1, done):.2f}"
                                  for k, v in requests.most_common() if v >= done / 20),
                      flush=True)
                print("  watch events sent per run (every watcher): " + ", ".join(
                    f"{k} {v / max(1, done):.2f}" for k, v in events.most_common()
                    if v >= done / 20), flush=True)
                print("  and in the round: " + ", ".join(
                    f"{k} {v}" for k, v in requests.most_common() if 0 < v < done / 20),
                    flush=True)
                if arm == "B" and not control:  # the operator stopped: its archive is written
                    total_archived = _archived(server)
                    print(f"  archived so far: {total_archived} runs", flush=True)
                    if total_archived < b.expect_archived:
                        keep = wd.parent / f"{wd.name}-operator-{i + 1}.log"
                        shutil.copy(wd / "operator-throughput.log", keep)
                        print(f"  runs missing from the archive: operator log kept in {keep}")
                deleted_at = time.monotonic()
                b.delete_namespace("bench-throughput", timeout=180)
                # The API server's NamespaceLifecycle admission looks a namespace up live (a
                # GET through its own loopback client, and etcd) on every request into it for
                # 30 s after a DELETE of it: the next round, in a namespace of the same name,
                # paid ~8-10 of those a run, and the first round none (bench/RESULTS.md).
                time.sleep(max(0.0, LIVE_LOOKUP_SECONDS - (time.monotonic() - deleted_at)))
            archived = 0 if control else _archived(server)
        finally:
            b.cluster.stop()
            server.cleanup()
    return _report(runs, done_rounds, archived, pace)


def _report(runs: int, done_rounds: list[Round], archived: int,
            pace: float | None = None) -> list[str]:
    arms = {arm: [r for r in done_rounds if r.arm == arm] for arm in ("A", "B")}
    rate = {arm: statistics.mean(r.per_min for r in rs) for arm, rs in arms.items()}
    names = sorted({n for r in done_rounds for n in r.cpu} - {"machine (all processes)"},
                   key=lambda n: (n != "operator", n != "postgres", n))

    def mean_cpu(arm: str, name: str) -> float:
        return statistics.mean(r.cpu.get(name, 0.0) for r in arms[arm])

    cost = 100 * (rate["A"] - rate["B"]) / rate["A"]
    a_all = sum(mean_cpu("A", n) for n in names)
    b_all = sum(mean_cpu("B", n) for n in names)
    cpu_cost = 100 * (1 - a_all / b_all)
    # At a pace, runs per minute is the pace: the cost is what the archive adds to the CPU
    # a run takes, on a machine whose 2 cores bound runs per minute.
    verdict_cost = cpu_cost if pace else cost
    lines = [f"Archive cost: {runs} single-step runs (instant pods) per round, ABBA x"
             f" {len(arms['A'])}; {archived} runs archived by the B rounds",
             "rounds (arm: runs/min, operator / all of ours ms CPU per run, load): " + "; ".join(
                 f"{r.arm} {r.per_min:.0f}, {r.cpu.get('operator', 0):.1f} /"
                 f" {sum(v for k, v in r.cpu.items() if k in names):.1f}, {r.load}"
                 for r in done_rounds),
             "", "| | A: no archive | B: archive | B vs A |", "|---|---|---|---|",
             f"| runs per minute{f' (created at {pace:.0f} a minute)' if pace else ''} |"
             f" {rate['A']:.0f} | {rate['B']:.0f} | {-cost:+.1f}% |",
             f"| target | throughput cost < 5%{' (the CPU-bound estimate below)' if pace else ''}"
             f" | | {'met' if verdict_cost < 5 else 'MISSED'} |",
             "", "| ms of CPU per run | A: no archive | B: archive | B - A |",
             "|---|---|---|---|"]
    for name in names:
        a, b_ = mean_cpu("A", name), mean_cpu("B", name)
        lines.append(f"| {name} | {a:.2f} | {b_:.2f} | {b_ - a:+.2f} |")
    lines.append(f"| **all of the above** | **{a_all:.1f}** | **{b_all:.1f}** |"
                 f" **{b_all - a_all:+.1f}** |")
    m = "machine (all processes)"
    lines.append(f"| (machine, all processes, others' work too) | {mean_cpu('A', m):.1f} |"
                 f" {mean_cpu('B', m):.1f} | |")
    # Each A round next to its B round (ABBA: rounds 1-2, 3-4, ...) ran under about the same
    # load from the rest of the machine: the median of those pairs' differences is the
    # figure least moved by another engineer's load coming and going between rounds.
    pairs = [(done_rounds[i], done_rounds[i + 1]) for i in range(0, len(done_rounds) - 1, 2)]
    diffs = [sum(b_.cpu.get(n, 0.0) for n in names) - sum(a.cpu.get(n, 0.0) for n in names)
             if a.arm == "A" else
             sum(a.cpu.get(n, 0.0) for n in names) - sum(b_.cpu.get(n, 0.0) for n in names)
             for a, b_ in pairs]
    if diffs:
        lines.append(f"| all, B - A in adjacent pairs (median of {len(diffs)}) | | |"
                     f" {statistics.median(diffs):+.1f} ({', '.join(f'{d:+.1f}' for d in diffs)})"
                     " |")
    lines.append("")
    lines.append(f"CPU-bound estimate of the cost (2 cores bound runs per minute by the total"
                 f" CPU per run): 1 - A/B = {cpu_cost:.1f}%")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("parts", nargs="*", default=["list", "throughput"])
    p.add_argument("--runs", type=int, default=300, help="runs per throughput round")
    p.add_argument("--rounds", type=int, default=4, help="throughput rounds (ABBA)")
    p.add_argument("--pace", type=float, default=None, metavar="RUNS_PER_MIN",
                   help="throughput: create the runs at this rate, not all at once: below the"
                        " machine's saturation, CPU per run is the cost without the feedback"
                        " of a saturated round (expired status holds, a backlogged job"
                        " controller); runs per minute is then the pace")
    p.add_argument("--warmup", type=int, default=1, help="throughput: rounds not counted first")
    p.add_argument("--control", action="store_true",
                   help="throughput: B rounds without the archive too (an A/A control: how far"
                        " the arms differ by chance on this machine)")
    p.add_argument("--list-runs", type=int, default=RUNS)
    p.add_argument("--reads", type=int, default=1000, help="calls per case of logread")
    p.add_argument("--other-pods", type=int, default=400,
                   help="logread: finished pods on the node besides the two read")
    p.add_argument("--at-once", type=int, default=4, help="logread: calls in flight at once")
    args = p.parse_args()
    out: list[str] = []
    if "list" in args.parts:
        out += [*bench_list(args.list_runs), ""]
        print("\n".join(out), flush=True)
    if "logread" in args.parts:
        print("\n".join(bench_logread(args.reads, args.other_pods, args.at_once)), flush=True)
    if "throughput" in args.parts:
        lines = bench_throughput(args.runs, args.rounds, args.control, args.pace, args.warmup)
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
