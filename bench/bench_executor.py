"""Start-up cost of the step executor: wall time and peak RSS of a `log` step.

Every step attempt starts a fresh `taskforge-executor` process, so its start-up is paid per
step and bounds how fast a chain of small steps can go (target: a `log` step under 300 ms
wall). The bare interpreter is measured alongside as the floor the executor cannot beat,
and an `http` step (which loads httpx, against a closed local port) shows what lazy
imports save the `log` step.

    .venv/bin/python bench/bench_executor.py [--runs 20] [--target-ms 300]

Prints a table; exits 1 if the `log` step's median misses the target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    seconds: float
    cpu_seconds: float
    max_rss_kib: int
    exit_code: int


@dataclass(frozen=True)
class Case:
    label: str
    command: list[str]
    step: Mapping[str, object] | None
    expected_exit: int


def executor_command() -> list[str]:
    script = Path(sys.executable).with_name("taskforge-executor")
    return [str(script)] if script.exists() else [sys.executable, "-m", "taskforge_executor"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_once(case: Case, env: dict[str, str]) -> Sample:
    """One process: wall time from spawn to reaped, and its own peak RSS (wait4 rusage)."""
    run_env = dict(env)
    if case.step is not None:
        run_env["TASKFORGE_STEP"] = json.dumps(case.step)
    started = time.perf_counter()
    proc = subprocess.Popen(
        case.command, env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped by wait4
    cpu = usage.ru_utime + usage.ru_stime
    return Sample(elapsed, cpu, usage.ru_maxrss, proc.returncode)  # ru_maxrss: KiB on Linux


def measure(cases: list[Case], env: dict[str, str], runs: int) -> list[list[Sample]]:
    """Round-robin over the cases, so a burst of load on a shared machine hits all alike."""
    for case in cases:
        run_once(case, env)  # warm-up: bytecode caches and the page cache, as on a warm node
    samples: list[list[Sample]] = [[] for _ in cases]
    for _ in range(runs):
        for case, into in zip(cases, samples, strict=True):
            into.append(run_once(case, env))
    for case, taken in zip(cases, samples, strict=True):
        bad = [s.exit_code for s in taken if s.exit_code != case.expected_exit]
        if bad:
            raise SystemExit(f"{case.label}: unexpected exit codes {bad}")
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--target-ms", type=float, default=300.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-executor-") as scratch:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKFORGE_")}
        env.update(
            TMPDIR=scratch,
            TASKFORGE_TERMINATION_MESSAGE_PATH=str(Path(scratch) / "termination-log"),
            TASKFORGE_RUN="bench",
            TASKFORGE_NAMESPACE="default",
            TASKFORGE_ATTEMPT="1",
        )
        log_step = {"name": "hello", "type": "log", "config": {"message": "hello"}}
        http_step = {
            "name": "ping",
            "type": "http",
            "config": {"url": f"http://127.0.0.1:{closed_port()}/", "timeout": "1s"},
        }
        cases = [
            Case("python -c pass (floor)", [sys.executable, "-c", "pass"], None, 0),
            Case("log step (taskforge-executor)", executor_command(), log_step, 0),
            Case("http step, refused (for contrast)", executor_command(), http_step, 75),
        ]
        results = list(zip(cases, measure(cases, env, args.runs), strict=True))

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"taskforge-executor start-up: {args.runs} runs per case, round-robin, after a warm-up")
    print(
        f"{platform.node()} | {platform.machine()} | {os.cpu_count()} CPUs |"
        f" Python {platform.python_version()} | load average {load}\n"
    )
    columns = ("case", "median ms", "p90 ms", "min ms", "CPU ms", "max RSS MiB")
    widths = (34, 9, 7, 7, 7, 11)
    print(
        "| "
        + " | ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(columns, widths, strict=True))
        )
        + " |"
    )
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    log_median = 0.0
    for case, samples in results:
        wall = sorted(s.seconds * 1000 for s in samples)
        median = statistics.median(wall)
        p90 = wall[min(len(wall) - 1, round(0.9 * (len(wall) - 1)))]
        cpu = statistics.median(s.cpu_seconds * 1000 for s in samples)
        rss = max(s.max_rss_kib for s in samples) / 1024
        if case.step is log_step:
            log_median = median
        print(
            f"| {case.label:<34} | {median:>9.1f} | {p90:>7.1f} | {wall[0]:>7.1f} |"
            f" {cpu:>7.1f} | {rss:>11.1f} |"
        )
    verdict = "OK" if log_median < args.target_ms else "MISSED"
    print(
        f"\nlog step median {log_median:.1f} ms wall vs target {args.target_ms:.0f} ms: {verdict}"
    )
    return 0 if verdict == "OK" else 1


if __name__ == "__main__":
    sys.exit(main())
