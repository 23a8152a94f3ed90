"""Tables of results, the summary, the machine they ran on, and bench/RESULTS.md."""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .cluster import Bench
from .common import RESULTS, verdict


@dataclass
class Section:
    """One table of results (markdown, so it pastes into RESULTS.md as is)."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

        def line(cells: list[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

        out = [f"### {self.title}", "", line(self.headers),
               "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(r) for r in self.rows]
        if self.notes:
            out.append("")
            out += [f"* {n}" for n in self.notes]
        return "\n".join(out) + "\n"


@dataclass
class Summary:
    what: str
    target: str
    measured: str
    ok: bool


@dataclass
class Outcome:
    sections: list[Section] = field(default_factory=list)
    summary: list[Summary] = field(default_factory=list)



def machine(b: Bench | None) -> list[str]:
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    version = "?"
    if b is not None and b.kube is not None:
        with contextlib.suppress(Exception):
            version = b.server_version()
    return [
        f"nproc {os.cpu_count()}" + (f" ({model})" if model else ""),
        f"memory {mem_kib / 1024 / 1024:.1f} GiB",
        f"Kubernetes {version} (local control plane, node agent in benchmark mode)",
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}",
    ]


RESULTS_HEADER = """# Benchmark results

Targets from DESIGN.md ("Targets"). Each `bench/bench_*.py` prints its tables; runs recorded with
the date and the machine are appended below (`bench/bench_operator.py --record` appends its own).

| what | target | why |
|---|---|---|
| step hand-off: pod finished -> next Job created | p50 ≤ 50 ms, p99 ≤ 250 ms | Argo requeues every 10 s by default |
| single-step runs completed per minute, one operator, 2 cores | ≥ 600 | Argo with default QPS: 270/min on a 50-node cluster |
| API writes per step (apiserver's own request counters) | ≤ 3 | one Job create plus batched status patches |
| operator memory with 1,000 active runs | ≤ 200 MiB RSS | Argo users report GiBs |
| 1,000-step run object size | < 512 KiB | etcd limit 1.5 MiB |
| cron: run created after its scheduled time | ≤ 1 s, never twice | CronJob checks every 10 s |
"""  # noqa: E501


def record(text: str) -> None:
    if not RESULTS.exists():
        RESULTS.write_text(RESULTS_HEADER)
    with RESULTS.open("a") as out:
        out.write("\n" + text)
    print(f"appended to {RESULTS}")


def report(outcomes: dict[str, Outcome], failed: list[str], info: list[str], *,
           started: datetime, wall: float, others: float, load_before: float,
           record_results: bool) -> None:
    """Print the summary of every scenario that ran and the machine; with --record, append it
    and every table to bench/RESULTS.md.

    `others` is the CPU time the rest of the machine used during the run, `load_before` the load
    average before it.
    """
    info.append(
        f"load average before the run {load_before:.2f}; during the run other processes on the "
        f"machine used {others:.0f} CPU-s ({100 * others / wall:.0f}% of one CPU on average)"
    )
    summary = Section(
        "Summary (DESIGN.md targets)", ["what", "target", "measured", "verdict"],
        [[s.what, s.target, s.measured, verdict(s.ok)]
         for o in outcomes.values() for s in o.summary],
        [f"failed to run: {f}" for f in failed],
    )
    print(summary.render())
    print("machine: " + "; ".join(info))
    print(f"total {wall:.0f} s")
    if record_results:
        body = [f"## {started:%Y-%m-%d %H:%M} UTC — operator on the local control plane "
                "(`bench/bench_operator.py`)", "", *[f"* {line}" for line in info], "",
                summary.render()]
        body += [section.render() for o in outcomes.values() for section in o.sections]
        record("\n".join(body))
