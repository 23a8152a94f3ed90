"""Workflow steps: a step that runs another Workflow as a child WorkflowRun.

The child is an ordinary run of a Workflow in the same namespace (a call names no namespace,
so a run can only start what its namespace holds), created by the operator with:

* a deterministic name (`child_run_name`: parent, step and a hash of both), so a replan or a
  restarted operator asks for the same run and a 409 of our own child is success;
* the parent as its controller owner (deleting the parent deletes the child), and the labels
  `taskforge.io/parent-run` and `taskforge.io/parent-step`;
* its call chain (the workflows of every run above it) in `taskforge.io/call-chain`, which
  is how depth and cycles are found without reading any other run: a call whose Workflow is
  already in the chain fails the step with the cycle spelled out, and a chain deeper than
  MAX_DEPTH fails it too, before any child exists.

The step ends with the child: Succeeded with the child's run outputs as its outputs, or
Failed naming the child and its message. A child deleted by hand before it finished fails the
step ("child run X was deleted"): it is never created again, since that would run it twice.
It is not retried (the child's steps have their own retries). Cancelling the parent (or its
timeout) sets `spec.cancel` on the child.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from taskforge.api.run import StepFailure, StepStatus
from taskforge.engine.actions import CancelRun, CreateRun
from taskforge.engine.naming import _dns, label_value
from taskforge.engine.observe import failed
from taskforge.engine.results import bound_message, bound_outputs
from taskforge.engine.templating import TemplateError, TemplateLimitError, render_config
from taskforge.engine.work import Work

MAX_DEPTH = 5
"""Runs nested below a run started by a person or a trigger (that run is depth 0)."""
LABEL_PARENT_RUN = "taskforge.io/parent-run"
LABEL_PARENT_STEP = "taskforge.io/parent-step"
CHAIN_ANNOTATION = "taskforge.io/call-chain"
INLINE = "(inline)"
_MAX_NAME = 253
_TERMINAL = ("Succeeded", "Failed", "Cancelled")


def child_run_name(run: str, step: str) -> str:
    """`<run>-<step>-<hash>`: the same for the same parent and step, different for `a-b`/`c`
    and `a`/`b-c`, and a valid object name (cut to 253 characters before the hash)."""
    digest = hashlib.sha256(f"{run}\x00{step}".encode()).hexdigest()[:8]
    base = _dns(f"{run}-{step}")[: _MAX_NAME - len(digest) - 1].rstrip("-.")
    return f"{base}-{digest}" if base else digest


def parse_chain(value: str | None) -> tuple[str, ...]:
    """The call chain annotation; () when absent or malformed (then the run counts as a root:
    the chain only ever grows by the operator's own writes, see README)."""
    if not value or len(value) > 4096:
        return ()
    try:
        data = json.loads(value)
    except ValueError:
        return ()
    if not isinstance(data, list) or len(data) > MAX_DEPTH + 1:
        return ()
    return tuple(str(x)[:_MAX_NAME] for x in data)


def chain_annotation(lineage: tuple[str, ...]) -> str:
    return json.dumps(list(lineage), separators=(",", ":"))


def _create(work: Work, name: str) -> CreateRun | str:
    """The CreateRun of the step's child, or why it cannot be created (cycle, depth,
    template)."""
    call = work.dag.steps[name].workflow
    assert call is not None
    chain = (*work.facts.lineage, work.workflow or INLINE)
    if call.name in chain:
        loop = " -> ".join((*chain[chain.index(call.name):], call.name))
        return f"workflow cycle: {loop} (a workflow may not call itself, directly or not)"
    if len(chain) > MAX_DEPTH:
        return (f"sub-workflow depth limit {MAX_DEPTH} reached:"
                f" {' -> '.join((*chain, call.name))}")
    try:
        params = render_config(dict(call.params or {}), work.ctx.for_templates(), work.render,
                               "workflow.params")
    except TemplateError as exc:
        kind = "TemplateLimit" if isinstance(exc, TemplateLimitError) else "template"
        return f"{kind}: step {name!r}: {exc}"
    run = work.facts.name
    return CreateRun(
        step=name, run_name=child_run_name(run, name), workflow=call.name, params=params,
        labels={LABEL_PARENT_RUN: label_value(run), LABEL_PARENT_STEP: name}, lineage=chain,
    )


def start(work: Work, name: str, st: StepStatus) -> None:
    """A Pending workflow step whose dependencies are done: create its child run."""
    action = _create(work, name)
    if isinstance(action, str):
        kind: StepFailure | None = "TemplateLimit" if action.startswith("TemplateLimit") else None
        failed(work, name, st, None, action.removeprefix("TemplateLimit: ")
               .removeprefix("template: "), failure=kind)
        return
    work.actions.append(action)
    work.set(name, st, phase="Running", attempts=1, child_run=action.run_name,
             started_at=work.stamp, next_attempt_at=None, wait_until=None, message=None)
    work.emit("Normal", "StepStarted",
              f"step {name!r} started: run {action.run_name} of workflow {action.workflow}",
              name)


def advance(work: Work, name: str, st: StepStatus) -> None:
    """A Running workflow step: end it with its child, or ask for the child again."""
    child = work.facts.children.get(name)
    if child is None:  # created, not seen yet (or lost): creating it again is idempotent
        action = _create(work, name)
        if isinstance(action, CreateRun):
            work.actions.append(action)
        return
    if not child.owned:
        failed(work, name, st, None, f"a WorkflowRun named {child.name!r} exists but was not"
               " created by this step; delete or rename it")
        return
    if child.deleted and child.phase not in _TERMINAL:
        failed(work, name, st, None, f"child run {child.name} was deleted before it finished"
               " (it is not created again: that would run it twice)")
        return
    if child.phase not in _TERMINAL:
        return
    if child.phase == "Succeeded":
        outputs = bound_outputs(dict(child.outputs or {}), work.output_limit)
        work.set(name, st, phase="Succeeded", finished_at=work.stamp, exit_code=0,
                 outputs=outputs or None, message=f"run {child.name} succeeded")
        work.emit("Normal", "StepSucceeded", f"step {name!r} succeeded (run {child.name})",
                  name)
        return
    why = child.message or child.phase.lower()
    failed(work, name, st, None,
           bound_message(f"run {child.name} {child.phase.lower()}: {why}"))


def cancel(work: Work, name: str, st: StepStatus, why: str) -> None:
    """The parent stops: cancel the child (its finally steps run); the step is Cancelled."""
    if st.phase == "Running" and st.child_run:
        work.actions.append(CancelRun(st.child_run, f"parent step {name!r}: {why}"))
    work.set(name, st, phase="Cancelled", finished_at=work.stamp, message=why)


def child_runs(spec_steps: Any, run: str) -> dict[str, str]:
    """Step -> child run name for every workflow step (what the adapter looks up)."""
    return {s.name: child_run_name(run, s.name) for s in spec_steps if s.workflow is not None}


__all__ = [
    "CHAIN_ANNOTATION",
    "LABEL_PARENT_RUN",
    "LABEL_PARENT_STEP",
    "MAX_DEPTH",
    "advance",
    "cancel",
    "chain_annotation",
    "child_run_name",
    "child_runs",
    "parse_chain",
    "start",
]
