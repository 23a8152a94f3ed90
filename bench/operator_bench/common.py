"""Constants, small helpers and the workflows the scenarios run."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "RESULTS.md"
API = "/apis/taskforge.io/v1alpha1"
INSTANT_IMAGE = "taskforge.io/bench-instant"
USER_AGENT = "taskforge-bench"
OPERATOR_COMPONENT = "taskforge-operator"
TERMINAL = frozenset({"Succeeded", "Failed", "Cancelled"})
HISTORY = {"successfulRuns": 1000, "failedRuns": 1000}
SCENARIOS = ("floor", "memory", "handoff", "throughput", "writes", "size")
EXTRA_SCENARIOS = ("memory10k",)  # only when named: long
JSON = dict[str, Any]


def quantile(values: Iterable[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    data = sorted(values)
    if not data:
        return math.nan
    pos = (len(data) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"



def compact(obj: Any) -> int:
    return len(json.dumps(obj, separators=(",", ":")).encode())


def size(n: float) -> str:
    return f"{n:.0f} B" if n < 1024 else f"{n / 1024:.1f} KiB"



def log_step(name: str, deps: list[str] | None = None) -> JSON:
    step: JSON = {"name": name, "log": {"message": f"bench step {name} of {{{{ run.name }}}}"}}
    if deps:
        step["dependsOn"] = deps
    return step


def chain_spec(n: int) -> JSON:
    names = [f"s{i:02d}" for i in range(n)]
    steps = [log_step(s, [names[i - 1]] if i else None) for i, s in enumerate(names)]
    return {"steps": steps, "history": HISTORY}


def fan_out_spec(n: int = 1000, collectors: int = 10) -> JSON:
    """1 root, n-1-collectors parallel workers, collectors each waiting on every 10th worker."""
    workers = n - 1 - collectors
    steps = [log_step("root")]
    steps += [log_step(f"w{i:04d}", ["root"]) for i in range(workers)]
    steps += [log_step(f"c{c:02d}", [f"w{i:04d}" for i in range(c, workers, collectors)])
              for c in range(collectors)]
    return {"steps": steps, "history": HISTORY}
