"""Per-run memory of the operator, from two of its dumps (operator's handlers/memdump.py).

The memory scenario with `--memdump` starts the operator with TASKFORGE_MEMDUMP, signals it
once idle and once with every run active, and hands both dumps here. Two views, each divided
by the number of runs:

* allocation sites: tracemalloc's snapshot diff, by the innermost frame, and by the innermost
  frame in the operator's own code (`taskforge/`), i.e. which of our calls made it;
* holders: the deep size of each attribute of the operator's parts (Store.runs, Store.jobs,
  the reconciler's parsed specs...), i.e. who keeps it.
"""

from __future__ import annotations

import json
import os
import signal
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path
from typing import Any

from .report import Section

OURS = f"{os.sep}taskforge{os.sep}"


def request_dump(pid: int, directory: Path, n: int, timeout: float = 120.0) -> dict[str, Any]:
    """SIGUSR2 the operator and wait for its dump number `n`; its holders summary."""
    path = directory / f"holders-{n}.json"
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():  # written aside and renamed: whole when it is there
            summary: dict[str, Any] = json.loads(path.read_text())
            return summary
        time.sleep(0.2)
    raise RuntimeError(f"the operator wrote no memory dump {n} in {timeout:.0f} s")


def _short(filename: str) -> str:
    for marker in (OURS, f"{os.sep}site-packages{os.sep}", f"{os.sep}lib{os.sep}python"):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return f"taskforge/{tail}" if marker == OURS else tail
    return filename


def _ours(tb: tracemalloc.Traceback) -> str:
    """The innermost frame in the operator's own code (tracebacks are oldest first)."""
    for frame in reversed(tb):
        if OURS in frame.filename and "memdump" not in frame.filename:
            return f"{_short(frame.filename)}:{frame.lineno}"
    return "(no taskforge frame)"


def sites(before: Path, after: Path, runs: int, top: int = 12) -> list[Section]:
    old = tracemalloc.Snapshot.load(str(before))
    new = tracemalloc.Snapshot.load(str(after))
    filters = [tracemalloc.Filter(False, tracemalloc.__file__),
               tracemalloc.Filter(False, "*memdump.py")]
    old, new = old.filter_traces(filters), new.filter_traces(filters)
    diff = new.compare_to(old, "lineno")
    total = sum(d.size_diff for d in diff)
    rows = [[f"{_short(d.traceback[0].filename)}:{d.traceback[0].lineno}",
             f"{d.size_diff / runs / 1024:.2f}", f"{d.count_diff / runs:.1f}"]
            for d in diff[:top]]
    by_ours: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
    for stat in new.compare_to(old, "traceback"):
        entry = by_ours[_ours(stat.traceback)]
        entry[0] += stat.size_diff
        entry[1] += stat.count_diff
    ours_rows = [[site, f"{size / runs / 1024:.2f}", f"{count / runs:.1f}"]
                 for site, (size, count) in sorted(by_ours.items(), key=lambda kv: -kv[1][0])
                 [:top]]
    note = (f"tracemalloc, idle -> {runs:,} runs active: {total / runs / 1024:.2f} KiB per run "
            "traced in all (Python allocations only; RSS adds the allocator's slack)")
    return [
        Section("Memory per active run by allocation site (innermost frame)",
                ["allocated at", "KiB per run", "blocks per run"], rows, [note]),
        Section("Memory per active run by the operator's own call that allocated it",
                ["innermost taskforge/ frame", "KiB per run", "blocks per run"], ours_rows,
                [note]),
    ]


def holders(before: dict[str, Any], after: dict[str, Any], runs: int,
            top: int = 14) -> Section:
    old = {r["holder"]: r for r in before["holders"]}
    rows = []
    total = 0
    for r in after["holders"]:
        o = old.get(r["holder"], {"bytes": 0, "objects": 0})
        grew = int(r["bytes"]) - int(o["bytes"])
        total += grew
        rows.append((grew, [r["holder"], f"{grew / runs / 1024:.2f}",
                            f"{(int(r['objects']) - int(o['objects'])) / runs:.0f}",
                            "" if r["entries"] is None else f"{r['entries']:,}"]))
    rows.sort(key=lambda x: -x[0])
    return Section(
        "Memory per active run by holder (deep size of the operator's structures)",
        ["holder", "KiB per run", "objects per run", "entries"],
        [r for _, r in rows[:top]],
        [f"{total / runs / 1024:.2f} KiB per run held in all; sys.getsizeof summed over the "
         "objects reachable through dicts, lists, tuples, sets and pydantic models, each "
         "counted once (for the first holder walked)"],
    )


def parts(before: dict[str, Any], after: dict[str, Any], runs: int, top: int = 16) -> Section:
    """What the cached bodies hold, by part (metadata, spec, status fields)."""
    old = {r["holder"]: r for r in before.get("parts", [])}
    rows = []
    for r in after.get("parts", []):
        o = old.get(r["holder"], {"bytes": 0, "objects": 0})
        grew = int(r["bytes"]) - int(o["bytes"])
        rows.append((grew, [r["holder"], f"{grew / runs / 1024:.2f}",
                            f"{(int(r['objects']) - int(o['objects'])) / runs:.1f}"]))
    rows.sort(key=lambda x: -x[0])
    return Section(
        "Memory per active run by part of the cached bodies",
        ["part", "KiB per run", "objects per run"], [r for _, r in rows[:top]],
        ["deep sizes as in the holders table, per part of the bodies; what bodies share (the "
         "pinned spec, dict keys decoded once) counts once"],
    )
