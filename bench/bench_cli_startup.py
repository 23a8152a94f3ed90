"""CPU time of `taskforge --help` and `--version` (target: under 150 ms each), and of a few
commands' help (no target: they import typer, ~90 ms alone; tests/unit/test_cli_main.py
bounds them against typer's own start-up).

Why CPU time and not wall time: the machine is shared, and a CLI that a user runs in a
shell loop or from completion should cost little whatever else is running. Each command
runs as a fresh process (the console script of the interpreter running this file), and
the child's user+sys time comes from `resource.getrusage(RUSAGE_CHILDREN)`.

    .venv/bin/python bench/bench_cli_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

TARGET_MS = 150.0
COMMANDS: list[list[str]] = [["--version"], ["--help"], ["list", "--help"], ["run", "--help"],
                             ["validate", "--help"]]


def _cli() -> list[str]:
    """The installed console script next to this interpreter, else `python -m`."""
    script = Path(sys.executable).with_name("taskforge")
    if script.exists():
        return [str(script)]
    found = shutil.which("taskforge")
    return [found] if found else [sys.executable, "-m", "taskforge.cli.main"]


def cpu_ms(argv: list[str]) -> float:
    """User+sys CPU milliseconds of one run of argv."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   env={**os.environ, "COLUMNS": "100"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return 1000.0 * ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    cli = _cli()
    cpu_ms([sys.executable, "-c", "pass"])  # warm the page cache
    floor = statistics.median(cpu_ms([sys.executable, "-c", "pass"]) for _ in range(args.runs))
    print(f"interpreter: {sys.version.split()[0]}  cli: {' '.join(cli)}  runs: {args.runs}")
    print(f"{'command':<28}{'median ms':>10}{'p90 ms':>9}{'target':>9}")
    print(f"{'python -c pass (floor)':<28}{floor:>10.0f}")
    worst = 0.0
    for extra in COMMANDS:
        cpu_ms(cli + extra)
        samples = sorted(cpu_ms(cli + extra) for _ in range(args.runs))
        median = statistics.median(samples)
        p90 = samples[int(0.9 * (len(samples) - 1))]
        if len(extra) > 1:  # a command's help imports typer: no target, see the test
            print(f"{'taskforge ' + ' '.join(extra):<28}{median:>10.0f}{p90:>9.0f}{'-':>9}")
            continue
        worst = max(worst, median)
        ok = "ok" if median < TARGET_MS else "SLOW"
        print(f"{'taskforge ' + ' '.join(extra):<28}{median:>10.0f}{p90:>9.0f}{ok:>9}")
    return 0 if worst < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
