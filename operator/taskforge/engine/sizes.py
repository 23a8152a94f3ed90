"""A run that cannot be stored: the size check before a status write, and the minimal status.

The API server keeps a custom resource in etcd as JSON, and etcd refuses a request over
1.5 MiB (`--max-request-bytes`); its gRPC client refuses messages over 2 MiB even before
that. The CRD caps (api/sizes.py) keep a spec far below, but untyped JSON (http `json`
bodies, Slack blocks, param values, a webhook body) cannot carry a CRD limit, and the status
of a big run grows with every step. Without this check a run whose pinned spec does not fit
launched all its first Jobs and then failed every status write: Jobs running, phase empty.

So the adapter measures the object it is about to write *before* creating any Job. Over
OBJECT_LIMIT_BYTES the run fails at once, with `StatusTooLarge` and a status small enough to
fit: the big parts are dropped, the reason says which part was big. Refusals the check did
not foresee (the apiserver answers 413, "request is too large", "larger than max") end the
same way (`JobTooLarge` for a Job): retrying an identical write cannot succeed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from types import ModuleType
from typing import Any

from taskforge.api.durations import format_duration, format_timestamp, parse_timestamp
from taskforge.engine.conditions import SUCCEEDED
from taskforge.engine.health import run_health_wire

_orjson: ModuleType | None
try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - the CLI's install (json_size says why)
    _orjson = None

ETCD_LIMIT_BYTES = 1_572_864
"""etcd's default `--max-request-bytes` (1.5 MiB): the largest object it stores."""
OBJECT_LIMIT_BYTES = 1_468_006
"""1.4 MiB: above this a status write is refused or nearly so. The margin covers what this
measure cannot see exactly (managedFields the write changes, etcd's request framing)."""

SPEC_MAX_BYTES = 393_216
"""384 KiB: the largest workflow spec, as JSON, the validating admission webhook accepts. A
run keeps a copy of it in status (an inline one is in its spec as well), next to the status
of every step; see README "Limits" for the arithmetic. Unlike the CRD's text budget, this
counts everything, untyped JSON included. A 1,000-step spec is typically 140 KiB."""

STATUS_TOO_LARGE = "StatusTooLarge"
JOB_TOO_LARGE = "JobTooLarge"

DROPPED_STATUS_FIELDS = ("workflowSpec", "steps", "params", "progress")
"""What a run failed for its size gives up: the pinned spec, the step statuses, the resolved
params. Kept: phase, conditions, message, times, the pinned Workflow's name and generation,
and the dead-letter record (the outbox must not lose it)."""


def json_size(value: Any) -> int:
    """Bytes of `value` as compact UTF-8 JSON, which is how the API server stores it.

    Asked before every status write, of the whole run: with orjson (the operator's install)
    that costs a fifth of the stdlib's encoder, 3% of the operator's CPU per step (issue 14).
    The CLI's install has no orjson and takes the stdlib's path; so does what orjson cannot
    encode (integers past 64 bits). The two agree to the byte on JSON values
    (tests/engine/test_sizes_json.py)."""
    if _orjson is not None:
        try:
            return len(_orjson.dumps(value, default=str, option=_orjson.OPT_NON_STR_KEYS))
        except TypeError:
            pass
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return len(text.encode())


def kib(size: int) -> str:
    return f"{size / 1024:,.0f} KiB" if size < 1024 * 1024 else f"{size / 1048576:.2f} MiB"


def _biggest_path(value: Any, path: str, depth: int = 4) -> str:
    """The path down to the largest part of `value`, a few levels deep: what to shrink."""
    for _ in range(depth):
        if isinstance(value, dict) and value:
            key = max(value, key=lambda k: json_size(value[k]))
            path, value = f"{path}.{key}", value[key]
        elif isinstance(value, list) and value:
            i = max(range(len(value)), key=lambda j: json_size(value[j]))
            path, value = f"{path}[{i}]", value[i]
        else:
            break
    return path


def spec_size_problem(spec: Any, limit: int = SPEC_MAX_BYTES) -> str | None:
    """None when a workflow spec is small enough to pin into a run; else why not, naming the
    largest part (`spec.steps[3].http.json: ...`), for the admission webhook to refuse."""
    size = json_size(spec)
    if size <= limit:
        return None
    where = _biggest_path(spec, "spec")
    return (
        f"{where}: the workflow spec is {kib(size)} as JSON, more than {kib(limit)}, and this"
        f" is its largest part ({kib(json_size(_at(spec, where)))}): a run keeps a copy of"
        " the spec in its status and must fit in etcd. Keep large content (JSON bodies,"
        " scripts) in a ConfigMap, a Secret or the image"
    )


def _at(spec: Any, path: str) -> Any:
    value = spec
    for part in path.removeprefix("spec").replace("]", "").replace("[", ".").split(".")[1:]:
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


@dataclass(frozen=True)
class Oversize:
    """Why a run fails for its size: a reason for programs, a sentence for people."""

    reason: str
    message: str


def _parts(body: dict[str, Any], status: dict[str, Any]) -> list[tuple[str, int]]:
    parts = [(f"status.{k}", json_size(v)) for k, v in status.items()]
    parts += [(f"spec.{k}", json_size(v)) for k, v in (body.get("spec") or {}).items()]
    meta = body.get("metadata") or {}
    parts += [(f"metadata.{k}", json_size(v)) for k, v in meta.items()]
    return sorted(parts, key=lambda p: -p[1])


def check_run_size(
    body: dict[str, Any], status: dict[str, Any], limit: int = OBJECT_LIMIT_BYTES
) -> Oversize | None:
    """None when the run with `status` (its wire form) fits; else why it does not."""
    rest = {k: v for k, v in body.items() if k != "status"}
    total = json_size(rest) + json_size(status)
    if total <= limit:
        return None
    biggest = ", ".join(f"{name} {kib(size)}" for name, size in _parts(body, status)[:3])
    return Oversize(
        STATUS_TOO_LARGE,
        f"the run would be {kib(total)} with its status, more than the {kib(limit)} the API"
        f" server can store (etcd keeps objects up to 1.5 MiB); largest parts: {biggest}."
        " Make the workflow spec, its params and the steps' results smaller.",
    )


def job_too_large(step: str, attempt: int, refusal: str) -> Oversize:
    return Oversize(
        JOB_TOO_LARGE,
        f"the Job of step {step!r} (attempt {attempt}) was refused as too large: {refusal}."
        " Make the step's configuration (its rendered templates, body, env) smaller.",
    )


def check_job_size(
    manifest: dict[str, Any], step: str, attempt: int, limit: int = OBJECT_LIMIT_BYTES
) -> Oversize | None:
    """None when a Job manifest can be stored; else JobTooLarge, before the API is asked (its
    answer to an oversized Job is not always recognizable: see handlers/failures.py)."""
    size = json_size(manifest)
    if size <= limit:
        return None
    return job_too_large(step, attempt, f"the Job is {kib(size)}, more than {kib(limit)}")


def status_refused(refusal: str) -> Oversize:
    return Oversize(
        STATUS_TOO_LARGE,
        f"the API server refused the run's status as too large: {refusal}. Make the workflow"
        " spec, its params and the steps' results smaller.",
    )


def oversize_patch(
    old: dict[str, Any], oversize: Oversize, now: datetime, generation: int | None
) -> dict[str, Any]:
    """The merge patch that fails the run: phase Failed, Succeeded=False with the reason, and
    every big part of the status removed (null), so the write itself cannot be too large.

    A run with no steps in status is a terminal run with nothing running: the next reconcile
    deletes its remaining active Jobs (engine.planner.delete_active).
    """
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")  # conditions: whole seconds, as the engine's
    moment = format_timestamp(now)  # status times: milliseconds, as the models write them
    started = old.get("startedAt") or moment
    begun = parse_timestamp(started)
    condition = {
        "type": SUCCEEDED,
        "status": "False",
        "reason": oversize.reason,
        "message": oversize.message,
        "lastTransitionTime": stamp,
        "observedGeneration": generation,
    }
    others = [c for c in old.get("conditions") or [] if c.get("type") != SUCCEEDED]
    patch: dict[str, Any] = {
        "phase": "Failed",
        "message": oversize.message,
        "conditions": run_health_wire("Failed", [*others, condition], generation, now),
        "startedAt": started,
        "finishedAt": moment,
        "duration": format_duration((now - begun).total_seconds() if begun else 0),
        "observedGeneration": generation,
    }
    for name in DROPPED_STATUS_FIELDS:
        if name in old:
            patch[name] = None
    return patch

