"""Where the operator's memory goes, on demand: `TASKFORGE_MEMDUMP=<directory>`.

Issue 14 asks what each active run costs (the cached bodies, the pinned specs, the per-run
structures). RSS alone cannot say; this answers it from inside the process, two ways:

* tracemalloc snapshots (where each live block was allocated), dumped with tracemalloc's own
  format so two of them can be diffed later (`bench/operator_bench/memprofile.py`);
* the deep size of each attribute of the operator's parts (the Store's runs, Jobs, pods,
  the reconciler's parsed specs, the queues' timers...), i.e. who holds the memory; an object
  reachable from two holders counts once, for the first one walked.

Off unless the variable is set: then tracemalloc starts when the operator does (it slows the
process down, a bench tool, never for production) and each SIGUSR2 writes
`snapshot-N.tracemalloc` and `holders-N.json` into the directory. Nothing here runs on the hot
path when it is off: `install_from_env` returns at once.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys
import time
import tracemalloc
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import BaseModel

log = logging.getLogger("taskforge.memdump")

ENV = "TASKFORGE_MEMDUMP"
FRAMES_ENV = "TASKFORGE_MEMDUMP_FRAMES"
DEFAULT_FRAMES = 12

# Walked into: plain data, our models. Anything else (bound methods, event loops, timer
# handles, clients) counts its own size only: following a callback's __self__ would walk
# the whole operator and pin it on whichever holder came first.
_CONTAINERS = (dict, list, tuple, set, frozenset)
_LEAVES = (str, bytes, int, float, bool, type(None))


def deep_size(obj: object, seen: set[int]) -> tuple[int, int]:
    """(bytes, objects) reachable from `obj` through containers and pydantic models, each
    object counted once across calls sharing `seen`."""
    total = count = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        count += 1
        if isinstance(o, _LEAVES):
            continue
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, _CONTAINERS):
            stack.extend(o)
        elif isinstance(o, BaseModel) or type(o).__module__.startswith("taskforge."):
            stack.extend(r for r in gc.get_referents(o) if not isinstance(r, type))
    return total, count


def holders(roots: Mapping[str, object]) -> list[dict[str, Any]]:
    """Deep size of each attribute of each root (`name.attr`), biggest first."""
    seen: set[int] = set()
    rows: list[dict[str, Any]] = []
    for name, root in roots.items():
        seen.add(id(root))
        attrs = vars(root) if hasattr(root, "__dict__") else {}
        for attr, value in attrs.items():
            size, objects = deep_size(value, seen)
            entries = len(value) if isinstance(value, _CONTAINERS) else None
            rows.append({"holder": f"{name}.{attr}", "bytes": size, "objects": objects,
                         "entries": entries})
    rows.sort(key=lambda r: -int(r["bytes"]))
    return rows


def body_parts(name: str, bodies: Mapping[Any, Any]) -> list[dict[str, Any]]:
    """Deep size of the parts of cached bodies (metadata, spec, each status field), summed
    over all of them; what several bodies share counts once. Read apart from `holders`."""
    parts: dict[str, list[Any]] = {}
    for body in list(bodies.values()):
        if not isinstance(body, dict):
            continue
        for key, value in body.items():
            if key == "status" and isinstance(value, dict):
                for field, sub in value.items():
                    parts.setdefault(f"status.{field}", []).append(sub)
            else:
                parts.setdefault(str(key), []).append(value)
    seen: set[int] = set()
    rows: list[dict[str, Any]] = []
    for part, values in parts.items():
        size = objects = 0
        for value in values:
            s, o = deep_size(value, seen)
            size, objects = size + s, objects + o
        rows.append({"holder": f"{name}[*].{part}", "bytes": size, "objects": objects,
                     "entries": len(values)})
    rows.sort(key=lambda r: -int(r["bytes"]))
    return rows


def _parts() -> list[dict[str, Any]]:
    from taskforge.handlers import registration  # noqa: PLC0415 - only when dumping

    op = registration.OPERATOR
    if op is None:
        return []
    return [*body_parts("store.runs", op.store.runs), *body_parts("store.jobs", {
        (run, name): job for run, jobs in op.store.jobs.items() for name, job in jobs.items()
    }), *body_parts("store.pods", {
        (job, name): pod for job, pods in op.store.pods.items() for name, pod in pods.items()
    })]


def _roots() -> dict[str, object]:
    from taskforge.handlers import registration  # noqa: PLC0415 - only when dumping

    op = registration.OPERATOR
    if op is None:
        return {}
    return {"store": op.store, "runs": op.runs, "run_queue": op.run_queue,
            "run_queue.backoff": op.run_queue.backoff, "workflows": op.workflows,
            "workflow_queue": op.workflow_queue, "limits": op.limits}


class Dumper:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.n = 0

    def dump(self, roots: Mapping[str, object] | None = None) -> Path:
        """Write snapshot-N and holders-N; the snapshot's path."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.n += 1
        t0 = time.monotonic()
        gc.collect()
        snapshot_path = self.directory / f"snapshot-{self.n}.tracemalloc"
        if tracemalloc.is_tracing():
            tracemalloc.take_snapshot().dump(str(snapshot_path))
        rows = holders(_roots() if roots is None else roots)
        traced, peak = tracemalloc.get_traced_memory()
        parts = _parts() if roots is None else []
        summary = {"n": self.n, "traced": traced, "traced_peak": peak, "holders": rows,
                   "parts": parts, "seconds": 0.0}
        summary["seconds"] = round(time.monotonic() - t0, 3)
        # Written aside and renamed, so a reader never sees half a file.
        path = self.directory / f"holders-{self.n}.json"
        path.with_suffix(".tmp").write_text(json.dumps(summary, indent=1))
        path.with_suffix(".tmp").replace(path)
        log.warning("memory dump %d written to %s in %.1f s", self.n, self.directory,
                    summary["seconds"])
        return snapshot_path

    def on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        try:
            self.dump()
        except Exception:  # a failed dump must not take the operator down
            log.exception("memory dump failed")


def install_from_env(environ: Mapping[str, str] = os.environ,
                     signals: Iterable[int] = (signal.SIGUSR2,)) -> Dumper | None:
    """Start tracing and dump on SIGUSR2 when TASKFORGE_MEMDUMP names a directory."""
    directory = environ.get(ENV)
    if not directory:
        return None
    frames = int(environ.get(FRAMES_ENV) or DEFAULT_FRAMES)
    if frames < 1:
        raise ValueError(f"{FRAMES_ENV} must be at least 1, got {frames}")
    tracemalloc.start(frames)
    dumper = Dumper(Path(directory))
    for sig in signals:
        signal.signal(sig, dumper.on_signal)
    log.warning("memory dumps on SIGUSR2 into %s (tracemalloc, %d frames: slow)",
                directory, frames)
    return dumper
