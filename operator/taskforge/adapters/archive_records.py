"""What the archive stores, shaped from a run's body and status: no I/O here.

Records are `(kind, columns)` pairs, kind one of run, attempt, log (archive_db.write).
Secret values are redacted with the executor's own `Redactor` (taskforge_executor.console),
the one that already keeps them out of step results and executor logs; the operator applies
it once more here because a `container` step runs the user's image, whose output and
termination message no executor ever saw.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from taskforge_executor.console import Redactor
from taskforge_executor.contract import EXECUTOR_STEP_TYPES, secret_env

from taskforge.api.steps import STEP_TYPES
from taskforge.engine.authority import CREATOR_ANNOTATION
from taskforge.engine.facts import ObservedJob
from taskforge.engine.results import inline_log

Record = tuple[str, dict[str, Any]]

LOG_MAX_BYTES = 1024 * 1024
"""Per attempt, the archive keeps the last 1 MiB of the step container's log."""
LOG_TAIL_LINES = 50_000
"""...of its last 50,000 lines (the API server's tailLines), so a huge log is never read
whole; the bytes kept are the tail of those."""

LOG_GZIP_LEVEL = 3
"""gzip level of the stored logs: a 1 MiB log compresses in ~3 ms at 3 against ~7 ms at 6
(the default), for ~10% more bytes; the operator's CPU is the scarcer of the two."""

SecretRef = tuple[str, str]  # (Secret name, key)

NOT_ENDED = frozenset({"Pending", "Waiting", "Running"})
"""Step phases that say the run's status never saw the attempt end (not a reason)."""


def _map(value: Any) -> Mapping[str, Any]:
    """A mapping, or an empty one: the body and status are hostile input (a status written
    by hand, a spec the models reject) and one odd field must not lose the whole record."""
    return value if isinstance(value, Mapping) else {}


def _int(value: Any) -> int | None:
    """An integer for an integer column, or None (never a value the database refuses)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return _int(int(value))
    return None


def _int32(value: Any) -> int | None:
    number = _int(value)
    return number if number is not None and -(2**31) <= number < 2**31 else None


def _time(value: Any) -> str | None:
    """An ISO 8601 time for a timestamptz column, or None."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return None
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


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


def _wire_steps(spec: Mapping[str, Any] | None) -> list[Any]:
    """The spec's steps and finally steps as stored, unchecked (a hostile spec's included)."""
    return [*((spec or {}).get("steps") or []), *((spec or {}).get("finally") or [])]


def step_secret_refs(spec: Mapping[str, Any] | None, step: str) -> set[SecretRef]:
    """The Secret keys a step's pod was given: what the executor wires (secret_env) and any
    `secretKeyRef` in its config (a container step's env)."""
    found: set[SecretRef] = set()
    for wire in _wire_steps(spec):
        if not isinstance(wire, Mapping) or wire.get("name") != step:
            continue
        for step_type in STEP_TYPES:
            config = wire.get(step_type)
            if isinstance(config, Mapping):
                found |= {(name, key) for _, name, key in secret_env(step_type, config)}
                _walk_secret_refs(config, found)
    return found


def runs_executor(spec: Mapping[str, Any] | None, step: str) -> bool:
    """Does the step's pod run the executor (so a log in its termination message is the
    executor's copy of its log), not the user's own image (`container`)?"""
    for wire in _wire_steps(spec):
        if isinstance(wire, Mapping) and wire.get("name") == step:
            return any(isinstance(wire.get(t), Mapping) for t in EXECUTOR_STEP_TYPES)
    return False


def executor_log(spec: Mapping[str, Any] | None, step: str,
                 job: ObservedJob | None) -> str | None:
    """The attempt's whole log from its termination message, when the executor wrote one
    there: the archive then needs no read of the pod's log."""
    if job is None or not runs_executor(spec, step):
        return None
    return inline_log(job.termination_message)


def run_secret_refs(spec: Mapping[str, Any] | None) -> set[SecretRef]:
    found: set[SecretRef] = set()
    for wire in _wire_steps(spec):
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
                    "content": _gzip(body)})


def _gzip(body: bytes) -> bytes:
    """gzip (what every reader decompresses) with a window no larger than the text: most
    step logs are a few lines, and zlib's default 32 KiB window and 256 KiB of state cost
    60 us to set up for them against 3 us; from 32 KiB on it is the usual window."""
    bits = max(9, min(15, len(body).bit_length()))
    squeeze = zlib.compressobj(LOG_GZIP_LEVEL, zlib.DEFLATED, 16 + bits,
                               memLevel=max(1, min(8, bits - 7)))
    return squeeze.compress(body) + squeeze.flush()


def attempt_record(uid: str, step: str, attempt: int, *, status: Mapping[str, Any],
                   job: ObservedJob | None, redact: Redactor) -> Record:
    """One ended attempt, from the run's new status (wire form) and its observed Job.

    An attempt the status never saw end (the run failed around it: too large to store, or
    invalid) takes its outcome from the Job, and is `Cancelled` while that still runs."""
    st = _map(_map(status.get("steps")).get(step))
    history = {_int(h.get("attempt")): h for h in st.get("attemptHistory") or []
               if isinstance(h, Mapping)}
    latest = _int(st.get("attempts")) == attempt
    entry: dict[str, Any] = dict(history.get(attempt) or {})
    if not entry and latest:
        entry = {"startedAt": st.get("startedAt"), "finishedAt": st.get("finishedAt"),
                 "exitCode": st.get("exitCode"),
                 "reason": st.get("failure") or st.get("phase"), "message": st.get("message")}
    if latest and st.get("message"):
        entry["message"] = st["message"]  # whole, not history's 128 characters
    unseen = entry.get("reason") in NOT_ENDED  # the run failed around a running attempt
    if unseen or not isinstance(entry.get("reason"), str):
        entry["reason"] = "Cancelled" if unseen else None
    if job is not None:
        if entry.get("exitCode") is None:
            entry["exitCode"] = job.exit_code
        if job.started_at is not None and not entry.get("startedAt"):
            entry["startedAt"] = job.started_at.isoformat()
        if job.finished_at is not None and not entry.get("finishedAt"):
            entry["finishedAt"] = job.finished_at.isoformat()
        if job.state != "Active" and (unseen or not entry.get("reason")):
            entry["reason"] = (job.failure or "Failed") if job.state == "Failed" else "Succeeded"
    outputs = st.get("outputs") if latest and st.get("phase") == "Succeeded" else None
    message = entry.get("message")
    job_name = job.name if job is not None else (st.get("jobName") if latest else None)
    return ("attempt", {
        "run_uid": uid, "step": step, "attempt": attempt, "job_name": _text(job_name),
        "started_at": _time(entry.get("startedAt")), "finished_at": _time(entry.get("finishedAt")),
        "exit_code": _int32(entry.get("exitCode")), "reason": _text(entry.get("reason")),
        "message": redact.text(message) if isinstance(message, str) else None,
        "outputs": redact.data(outputs) if outputs is not None else None,
    })


def _trigger(spec: Mapping[str, Any]) -> str:
    trigger = _map(spec.get("trigger")).get("type")
    return trigger if isinstance(trigger, str) and trigger else "manual"


def run_record(body: Mapping[str, Any], status: Mapping[str, Any], redact: Redactor) -> Record:
    """The finished run: identity, workflow, params, phase, times, trigger, outputs, the
    pinned spec, the creator, the conditions, and the steps' final summary. Every field is
    taken as hostile (a run failed as invalid has a spec the models reject): one of the
    wrong type is left out, never the record."""
    meta = _map(body.get("metadata"))
    spec = _map(body.get("spec"))
    pinned = _map(status.get("workflow"))
    creator = _map(meta.get("annotations")).get(CREATOR_ANNOTATION)
    steps = {name: {k: v for k, v in st.items() if k != "outputs"}
             for name, st in _map(status.get("steps")).items() if isinstance(st, Mapping)}
    workflow = pinned.get("name") or _map(spec.get("workflowRef")).get("name")
    conditions = status.get("conditions")
    message = status.get("message")
    return ("run", {
        "uid": str(meta.get("uid", "")), "namespace": str(meta.get("namespace", "")),
        "name": str(meta.get("name", "")), "workflow": _text(workflow),
        "workflow_generation": _int(pinned.get("generation")),
        "phase": _text(status.get("phase")) or "Unknown", "trigger": _trigger(spec),
        "params": redact.data(status.get("params") or spec.get("params")),
        "outputs": redact.data(status.get("outputs")),
        "pinned_spec": status.get("workflowSpec") or spec.get("workflowSpec"),
        "steps": redact.data(steps), "creator": _text(creator),
        "conditions": redact.data(conditions) if isinstance(conditions, list) else None,
        "message": redact.text(message) if isinstance(message, str) and message else None,
        "created_at": _time(meta.get("creationTimestamp")),
        "started_at": _time(status.get("startedAt")),
        "finished_at": _time(status.get("finishedAt")),
    })


def record_bytes(record: Record) -> int:
    """A record's rough size in memory, for the queue's byte bound."""
    content = record[1].get("content")
    return 512 + (len(content) if isinstance(content, bytes) else 0)
