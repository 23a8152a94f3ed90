"""What the archive stores, shaped from a run's body and status: no I/O here.

Records are `(kind, columns)` pairs, kind one of run, attempt, log (archive_db.write).
Secret values are redacted with the executor's own `Redactor` (taskforge_executor.console),
the one that already keeps them out of step results and executor logs; the operator applies
it once more here because a `container` step runs the user's image, whose output and
termination message no executor ever saw.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from taskforge_executor.console import Redactor
from taskforge_executor.contract import secret_env

from taskforge.api.steps import STEP_TYPES
from taskforge.engine.authority import CREATOR_ANNOTATION
from taskforge.engine.facts import ObservedJob

Record = tuple[str, dict[str, Any]]

LOG_MAX_BYTES = 1024 * 1024
"""Per attempt, the archive keeps the last 1 MiB of the step container's log."""
LOG_TAIL_LINES = 50_000
"""...of its last 50,000 lines (the API server's tailLines), so a huge log is never read
whole; the bytes kept are the tail of those."""

SecretRef = tuple[str, str]  # (Secret name, key)


@dataclass(frozen=True)
class Retention:
    """How long archived runs are kept: days, and/or runs per workflow; None keeps all."""

    days: int | None = None
    runs_per_workflow: int | None = None

    @property
    def enabled(self) -> bool:
        return self.days is not None or self.runs_per_workflow is not None


def _walk_secret_refs(value: Any, found: set[SecretRef]) -> None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if key == "secretKeyRef" and isinstance(inner, Mapping):
                name, item = inner.get("name"), inner.get("key")
                if isinstance(name, str) and isinstance(item, str):
                    found.add((name, item))
            else:
                _walk_secret_refs(inner, found)
    elif isinstance(value, list):
        for inner in value:
            _walk_secret_refs(inner, found)


def step_secret_refs(spec: Mapping[str, Any] | None, step: str) -> set[SecretRef]:
    """The Secret keys a step's pod was given: what the executor wires (secret_env) and any
    `secretKeyRef` in its config (a container step's env)."""
    found: set[SecretRef] = set()
    for wire in [*((spec or {}).get("steps") or []), *((spec or {}).get("finally") or [])]:
        if not isinstance(wire, Mapping) or wire.get("name") != step:
            continue
        for step_type in STEP_TYPES:
            config = wire.get(step_type)
            if isinstance(config, Mapping):
                found |= {(name, key) for _, name, key in secret_env(step_type, config)}
                _walk_secret_refs(config, found)
    return found


def run_secret_refs(spec: Mapping[str, Any] | None) -> set[SecretRef]:
    found: set[SecretRef] = set()
    for wire in [*((spec or {}).get("steps") or []), *((spec or {}).get("finally") or [])]:
        if isinstance(wire, Mapping) and isinstance(wire.get("name"), str):
            found |= step_secret_refs(spec, wire["name"])
    return found


def redactor(values: Iterable[bytes]) -> Redactor:
    r = Redactor()
    for value in values:
        text = value.decode("utf-8", errors="replace")
        r.add(text)
        stripped = text.strip()
        if stripped != text:
            r.add(stripped)  # a Secret written with a trailing newline, printed without it
    return r


def log_record(uid: str, step: str, attempt: int, *, pod: str | None, raw: bytes | None,
               redact: Redactor, note: str | None = None, cut: bool = False) -> Record:
    """An attempt's log: the tail kept, redacted, gzip-compressed. `cut`: the reader already
    left out the head (size is then what was kept, not what the pod printed)."""
    data = raw or b""
    truncated = cut or len(data) > LOG_MAX_BYTES
    tail = data[-LOG_MAX_BYTES:]
    text = redact.text(tail.decode("utf-8", errors="replace"))
    if truncated:
        newline = text.find("\n")  # start at a whole line
        text = text[newline + 1:] if 0 <= newline < 4096 else text
    body = text.encode("utf-8")
    return ("log", {"run_uid": uid, "step": step, "attempt": attempt, "pod": pod,
                    "size": len(data), "truncated": truncated, "note": note,
                    "content": gzip.compress(body, compresslevel=6)})


def attempt_record(uid: str, step: str, attempt: int, *, status: Mapping[str, Any],
                   job: ObservedJob | None, redact: Redactor) -> Record:
    """One ended attempt, from the run's new status (wire form) and its observed Job."""
    st = ((status.get("steps") or {}).get(step)) or {}
    history = {int(h.get("attempt", 0)): h for h in st.get("attemptHistory") or []}
    latest = int(st.get("attempts") or 0) == attempt
    entry: dict[str, Any] = dict(history.get(attempt) or {})
    if not entry and latest:
        entry = {"startedAt": st.get("startedAt"), "finishedAt": st.get("finishedAt"),
                 "exitCode": st.get("exitCode"),
                 "reason": st.get("failure") or st.get("phase"), "message": st.get("message")}
    if latest and st.get("message"):
        entry["message"] = st["message"]  # whole, not history's 128 characters
    if job is not None:
        entry.setdefault("exitCode", job.exit_code)
        if job.started_at is not None and not entry.get("startedAt"):
            entry["startedAt"] = job.started_at.isoformat()
        if job.finished_at is not None and not entry.get("finishedAt"):
            entry["finishedAt"] = job.finished_at.isoformat()
        if not entry.get("reason"):
            entry["reason"] = job.failure or ("Succeeded" if job.state == "Succeeded" else None)
    outputs = st.get("outputs") if latest and st.get("phase") == "Succeeded" else None
    message = entry.get("message")
    return ("attempt", {
        "run_uid": uid, "step": step, "attempt": attempt,
        "job_name": job.name if job is not None else (st.get("jobName") if latest else None),
        "started_at": entry.get("startedAt"), "finished_at": entry.get("finishedAt"),
        "exit_code": entry.get("exitCode"), "reason": entry.get("reason"),
        "message": redact.text(message) if isinstance(message, str) else None,
        "outputs": redact.data(outputs) if outputs is not None else None,
    })


def _trigger(spec: Mapping[str, Any]) -> str:
    trigger = (spec.get("trigger") or {}).get("type")
    return str(trigger) if trigger else "manual"


def run_record(body: Mapping[str, Any], status: Mapping[str, Any], redact: Redactor) -> Record:
    """The finished run: identity, workflow, params, phase, times, trigger, outputs, the
    pinned spec, the creator, and the steps' final summary."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    pinned = status.get("workflow") or {}
    creator = (meta.get("annotations") or {}).get(CREATOR_ANNOTATION)
    steps = {name: {k: v for k, v in (st or {}).items() if k != "outputs"}
             for name, st in (status.get("steps") or {}).items()}
    return ("run", {
        "uid": str(meta.get("uid", "")), "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "workflow": pinned.get("name") or (spec.get("workflowRef") or {}).get("name"),
        "workflow_generation": pinned.get("generation"),
        "phase": status.get("phase") or "Unknown", "trigger": _trigger(spec),
        "params": redact.data(status.get("params") or spec.get("params")),
        "outputs": redact.data(status.get("outputs")),
        "pinned_spec": status.get("workflowSpec") or spec.get("workflowSpec"),
        "steps": redact.data(steps), "creator": creator,
        "message": redact.text(status["message"]) if status.get("message") else None,
        "created_at": meta.get("creationTimestamp"), "started_at": status.get("startedAt"),
        "finished_at": status.get("finishedAt"),
    })


def record_bytes(record: Record) -> int:
    """A record's rough size in memory, for the queue's byte bound."""
    content = record[1].get("content")
    return 512 + (len(content) if isinstance(content, bytes) else 0)
