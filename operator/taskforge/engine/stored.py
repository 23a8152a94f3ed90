"""Results larger than a step's share of status: read from the log, stored, loaded back.

The chain, and why it is safe against a restart at any moment (status is the truth):

1. The executor prints a result that does not fit its 4 KiB termination message to the pod
   log and announces it there (`taskforge.api.resultlog`). `log_wanted` tells the adapter
   which finished attempts it must read a log for: only those status has not recorded yet.
2. `with_log` folds what the adapter read (or why it could not) into the ObservedJob.
3. When the step's outputs exceed its share of status (`Work.output_limit`), `keep_outputs`
   puts a per-key summary and a `StoredResult` reference in status and emits StoreResult.
   The adapter applies it before it writes that status; the ConfigMap's name is derived
   from run UID, step and attempt, so repeating it after a crash is a no-op. A result status
   acknowledged is therefore always stored; a crash before the write leaves the Job and
   its pod to read again (or the ConfigMap, if the pod is gone).
4. Later plans get the whole outputs of the steps `wanted_results` names (those that the
   templates and `when` of steps about to start read) in `RunFacts.results`.

Pure: the adapter does every read and write.
"""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from taskforge.api.resultlog import (
    KEY_RESULT_LOG,
    MAX_RESULT_BYTES,
    compact,
    digest,
    summarize,
)
from taskforge.api.run import TERMINAL_STEP_PHASES, StoredResult, WorkflowRunStatus
from taskforge.api.steps import Step
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.actions import StoreResult
from taskforge.engine.dag import Dag
from taskforge.engine.facts import ObservedJob, RunFacts
from taskforge.engine.naming import _digest, _dns
from taskforge.engine.templating import _named_steps, _sources

MIN_SUMMARY_BYTES = 64
_DONE_OR_ENDING = TERMINAL_STEP_PHASES | {"Running"}
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def result_name(run: str, uid: str, step: str, attempt: int) -> str:
    """`<run>-<step>-r<hash>-<attempt>` (a DNS subdomain), unique per run UID, step and
    attempt: a run deleted and created again under its name never meets the old results."""
    suffix = f"-r{_digest(uid, step, str(attempt))}-{attempt}"
    prefix = _dns(f"{run}-{step}")[: 63 - len(suffix)].rstrip("-")
    return f"{prefix}{suffix}" if prefix else suffix.lstrip("-")


def announced(job: ObservedJob) -> dict[str, Any] | None:
    """The `resultLog` announcement in the attempt's termination message, if well formed."""
    if not job.termination_message or KEY_RESULT_LOG not in job.termination_message:
        return None
    try:
        data = json.loads(job.termination_message)
    except ValueError:
        return None
    ref = data.get(KEY_RESULT_LOG) if isinstance(data, dict) else None
    if not isinstance(ref, dict):
        return None
    size, sha, lines = ref.get("size"), ref.get("sha256"), ref.get("lines")
    if not (isinstance(size, int) and isinstance(lines, int) and isinstance(sha, str)):
        return None
    if not re.fullmatch(r"[0-9a-f]{64}", sha) or size < 0 or not 0 < lines <= 1024:
        return None
    return {"size": size, "sha256": sha, "lines": lines}


def log_wanted(facts: RunFacts) -> list[tuple[ObservedJob, dict[str, Any]]]:
    """Finished attempts whose result is in their log and not yet recorded in status."""
    status = facts.status
    if status is None or status.workflow_spec is None or status.phase in (
        "Succeeded", "Failed", "Cancelled"
    ):
        return []
    steps = status.steps or {}
    out: list[tuple[ObservedJob, dict[str, Any]]] = []
    for job in facts.jobs:
        if job.state == "Active" or job.result_data is not None:
            continue
        st = steps.get(job.step)
        if st is not None and (st.attempts > job.attempt or (
            st.attempts == job.attempt and st.phase != "Running"
        )):
            continue  # recorded already
        ref = announced(job)
        if ref is not None:
            out.append((job, ref))
    return out


def with_log(job: ObservedJob, data: bytes | None, error: str | None) -> ObservedJob:
    """The attempt with the result read from its log; without it, a failed attempt.

    A step whose result cannot be had did not deliver what it promised: PodFailure, which
    its retry policy may retry (`on: [PodFailure]`), rather than a success with holes.
    """
    if data is not None and len(data) <= MAX_RESULT_BYTES:
        return replace(job, result_data=data)
    why = error or f"the result is over the limit of {MAX_RESULT_BYTES:,} bytes"
    message = json.dumps({"ok": False, "error": f"the step's result could not be read from"
                          f" its pod log: {why}"})
    return replace(job, state="Failed", failure="PodFailure", termination_message=message,
                   result_error=why)


def whole_outputs(job: ObservedJob) -> dict[str, Any] | None:
    """The outputs read from the log (None when the termination message has them all)."""
    if job.result_data is None:
        return None
    try:
        value = json.loads(job.result_data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else {"value": value}


def keep_outputs(
    facts: RunFacts, limit: int, step: str, attempt: int, outputs: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, StoredResult | None, StoreResult | None]:
    """(outputs for status, reference, action): the outputs themselves when they fit `limit`
    bytes; else a per-key summary, a StoredResult and the StoreResult that keeps them."""
    if not outputs:
        return None, None, None
    data = compact(outputs)
    if len(data) <= limit:
        return outputs, None, None
    sha = digest(data)
    ref = StoredResult(config_map=result_name(facts.name, facts.uid, step, attempt),
                       size=len(data), sha256=sha)
    overhead = len(compact({"result": ref.to_k8s()}))
    summary = summarize(outputs, max(limit - overhead, MIN_SUMMARY_BYTES))
    return summary, ref, StoreResult(step, attempt, ref.config_map, data, sha)


_REFS: dict[int, tuple[weakref.ref[WorkflowSpec], dict[str, frozenset[str] | None]]] = {}


def _step_refs(step: Step, names: frozenset[str]) -> frozenset[str] | None:
    """Steps whose outputs the step's templates and `when` read; None: cannot tell (all)."""
    config = getattr(step, step.step_type).to_k8s()
    text = "\n".join(s for s in _sources(config) if "steps" in s)
    named = _named_steps(text) if text else set()
    if named is None:
        return None
    if step.when and "steps" in step.when:
        named |= set(_TOKEN.findall(step.when)) & names
    return frozenset(named & names)


def _refs(spec: WorkflowSpec, dag: Dag) -> dict[str, frozenset[str] | None]:
    hit = _REFS.get(id(spec))
    if hit is not None and hit[0]() is spec:
        return hit[1]
    names = frozenset(dag.order)
    refs = {name: _step_refs(step, names) for name, step in dag.steps.items()}
    if len(_REFS) >= 256:
        _REFS.pop(next(iter(_REFS)))
    _REFS[id(spec)] = (weakref.ref(spec), refs)
    return refs


def wanted_results(facts: RunFacts, dag: Dag) -> dict[str, StoredResult]:
    """Stored results that this plan's templates and `when` may read, by step: those read
    by a step that is not done and whose dependencies are done or running (they may finish
    in this very plan), and whose config may be rendered now."""
    status: WorkflowRunStatus | None = facts.status
    if status is None or status.workflow_spec is None or status.phase != "Running":
        return {}
    steps = status.steps or {}
    stored = {n: st.result for n, st in steps.items() if st.result is not None}
    if not stored:
        return {}
    observed = {(j.step, j.attempt) for j in facts.jobs}
    refs = _refs(status.workflow_spec, dag)
    wanted: set[str] = set()
    for name in dag.order:
        st = steps.get(name)
        if st is not None and (st.phase in TERMINAL_STEP_PHASES or (
            st.phase == "Running" and (name, st.attempts) in observed
        )):
            continue
        deps = dag.deps.get(name, ())
        if any((d_st := steps.get(d)) is None or d_st.phase not in _DONE_OR_ENDING
               for d in deps):
            continue  # cannot start in this plan: a dependency has not even started
        named = refs.get(name)
        wanted |= set(stored) if named is None else (named & stored.keys())
    return {n: stored[n] for n in sorted(wanted)}


def loaded(
    facts: RunFacts, statuses: Mapping[str, Any]
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """(whole outputs, why not) by step, from `facts.results`, for the steps whose stored
    result in status is the one that was loaded (same SHA-256)."""
    whole: dict[str, dict[str, Any]] = {}
    notes: dict[str, str] = {}
    for name, item in facts.results.items():
        st = statuses.get(name)
        ref = getattr(st, "result", None)
        if ref is None or ref.sha256 != item.sha256:
            continue
        if item.outputs is not None:
            whole[name] = item.outputs
        else:
            notes[name] = item.error or "it was not loaded"
    return whole, notes
