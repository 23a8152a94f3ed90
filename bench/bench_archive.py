"""Benchmark of the run archive (issue 18; docs/archive.md). Two parts, both by default:

  list        a real PostgreSQL 15 (hack/localcluster/postgres_server.py) with 10,000
              archived runs of one namespace (3 attempts and 3 logs each); the time of
              ArchiveReader.list_runs for all 10,000 (target < 200 ms), of a first page of
              50, of get_run and of logs. Median of 7, after a warm-up.
  throughput  the operator bench's throughput scenario (bench/operator_bench, instant pods)
              run ABBA: A without the archive, B with TASKFORGE_ARCHIVE_URL; runs per minute
              and operator CPU per run (which includes the capture: log reads, redaction,
              the writer task). Target: the archive costs < 5% of single-step throughput.

Usage: .venv/bin/python bench/bench_archive.py [list] [throughput] [--runs N] [--rounds N]
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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1]))

from localcluster.postgres_server import PostgresServer
from taskforge.adapters import archive_db
from taskforge.adapters.archive_reader import ArchiveReader
from taskforge.adapters.archive_records import log_record, redactor

from bench.operator_bench.cluster import Bench, Operator, workdir
from bench.operator_bench.scenarios_operator import scenario_throughput

RUNS = 10_000


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


def bench_throughput(runs: int, rounds: int) -> list[str]:
    class ArchiveBench(Bench):
        archive_url: str | None = None

        def operator(self, name: str, **kwargs: Any) -> Operator:
            if self.archive_url:
                kwargs["extra_env"] = {"TASKFORGE_ARCHIVE_URL": self.archive_url}
            return super().operator(name, **kwargs)

    args = argparse.Namespace(throughput_runs=runs, throughput_timeout=300.0, profile=False,
                              crds=Path(__file__).resolve().parents[1] / "crds")
    results: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    with workdir(False) as wd:
        server = PostgresServer(wd / "postgres")
        server.start()
        b = ArchiveBench(wd, args)
        try:
            b.start()
            order = ("A", "B", "B", "A") * max(1, rounds // 2)
            for i, arm in enumerate(order):
                b.archive_url = server.url_for("postgres") if arm == "B" else None
                outcome = scenario_throughput(b)
                rows = {r[0]: r[1] for r in outcome.sections[0].rows}
                per_min = float(rows["runs per minute"])
                # the operator's CPU seconds over the runs that succeeded, to 0.1 ms a run
                # (the scenario rounds its own per-run figure to whole milliseconds)
                total = re.match(r"([\d.]+) s", rows["operator CPU"])
                done = re.match(r"(\d+) of", rows["runs Succeeded"])
                cpu = (1000 * float(total[1]) / max(1, int(done[1])) if total and done
                       else float("nan"))
                results[arm].append((per_min, cpu))
                load = Path("/proc/loadavg").read_text().split()[0]
                print(f"round {i + 1} ({arm}): {per_min:.0f} runs/min, {cpu:.1f} ms CPU/run,"
                      f" load {load}", flush=True)
                if arm == "B":  # the operator stopped: what it archived is written by now
                    total_archived = int(server.psql("SELECT count(*) FROM archived_runs"))
                    print(f"  archived so far: {total_archived} runs", flush=True)
                    if total_archived < runs * sum(1 for x in order[:i + 1] if x == "B"):
                        keep = wd.parent / f"{wd.name}-operator-{i + 1}.log"
                        shutil.copy(wd / "operator-throughput.log", keep)
                        print(f"  runs missing from the archive: operator log kept in {keep}")
                b.delete_namespace("bench-throughput", timeout=180)
            archived = server.psql("SELECT count(*) FROM archived_runs").strip()
        finally:
            b.cluster.stop()
            server.cleanup()
    a_rate = statistics.mean(r for r, _ in results["A"])
    b_rate = statistics.mean(r for r, _ in results["B"])
    a_cpu = statistics.mean(c for _, c in results["A"])
    b_cpu = statistics.mean(c for _, c in results["B"])
    cost = 100 * (a_rate - b_rate) / a_rate
    return [f"Archive cost: {runs} single-step runs (instant pods) per round, ABBA x"
            f" {len(results['A'])}; {archived} runs archived by the B rounds",
            "| | A: no archive | B: archive | B vs A |", "|---|---|---|---|",
            f"| runs per minute | {a_rate:.0f} | {b_rate:.0f} | {-cost:+.1f}% |",
            f"| operator CPU per run | {a_cpu:.1f} ms | {b_cpu:.1f} ms |"
            f" {100 * (b_cpu - a_cpu) / a_cpu:+.1f}% |",
            f"| target | throughput cost < 5% | | {'met' if cost < 5 else 'MISSED'} |"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("parts", nargs="*", default=["list", "throughput"])
    p.add_argument("--runs", type=int, default=300, help="runs per throughput round")
    p.add_argument("--rounds", type=int, default=4, help="throughput rounds (ABBA)")
    p.add_argument("--list-runs", type=int, default=RUNS)
    args = p.parse_args()
    out: list[str] = []
    if "list" in args.parts:
        out += [*bench_list(args.list_runs), ""]
        print("\n".join(out), flush=True)
    if "throughput" in args.parts:
        lines = bench_throughput(args.runs, args.rounds)
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
