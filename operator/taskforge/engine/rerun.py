"""New runs made from old ones: the manifest of a retry (reusing what succeeded) and of a
plain start or replay. Pure: the caller fetches the old run and the workflow spec it
followed, and creates the manifest returned here.

The rules of a retry are `taskforge retry`'s (cli/runs.py, which has the same logic over its
own client): what a retry reuses is a step's recorded outputs, never its side effects, so a
step is reused only if it Succeeded, allows it (`reuseOnRetry`, default true) and every step
it depends on is reused too; skipped and finally steps run again.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from taskforge import API_VERSION
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine import dag as engine_dag
from taskforge.engine.naming import LABEL_WORKFLOW, label_value

LABEL_RETRY_OF = "taskforge.io/retry-of"
LABEL_REPLAY_OF = "taskforge.io/replay-of"
_GENERATE_NAME_MAX = 58  # 63 minus the 5 random characters the API server appends


class RerunError(ValueError):
    """The old run cannot be retried (still running, succeeded, no workflow)."""


@dataclass(frozen=True)
class Layout:
    """Steps in DAG order (finally steps last), which are finally steps, and their deps."""

    order: list[str] = field(default_factory=list)
    finally_steps: list[str] = field(default_factory=list)
    deps: dict[str, list[str]] = field(default_factory=dict)


def layout(spec: dict[str, Any] | None) -> Layout:
    """The graph of a raw spec; an invalid spec keeps its own order (it is still shown)."""
    if not spec:
        return Layout()

    def names(key: str) -> list[str]:
        return [str(s.get("name")) for s in spec.get(key) or [] if isinstance(s, dict)]

    main, final = names("steps"), names("finally")
    deps = {
        str(s.get("name")): [str(d) for d in s.get("dependsOn") or []]
        for key in ("steps", "finally")
        for s in spec.get(key) or []
        if isinstance(s, dict)
    }
    order = main + final
    with contextlib.suppress(ValidationError, ValueError):
        built = engine_dag.build(WorkflowSpec.model_validate(spec))
        order, final = list(built.order), list(built.final)
    return Layout(order=order, finally_steps=final, deps=deps)


def run_manifest(
    *, workflow: str, name: str | None, source: dict[str, Any], params: dict[str, Any] | None,
    trigger: str, labels: dict[str, str] | None = None,
    reuse: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A WorkflowRun; `source` is {"workflowRef": ...} or {"workflowSpec": ...}."""
    meta: dict[str, Any] = {"labels": {LABEL_WORKFLOW: label_value(workflow), **(labels or {})}}
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = f"{workflow[:_GENERATE_NAME_MAX - 1].rstrip('-.')}-"
    spec: dict[str, Any] = {**source, "trigger": {"type": trigger}}
    if params:
        spec["params"] = params
    if reuse:
        spec["reuseSteps"] = reuse
    return {"apiVersion": API_VERSION, "kind": "WorkflowRun", "metadata": meta, "spec": spec}


def retry_manifest(
    old: dict[str, Any], followed: dict[str, Any] | None, name: str | None = None, *,
    reuse_steps: bool = True,
) -> tuple[dict[str, Any], list[str]]:
    """The new run retrying `old` (which followed the workflow spec `followed`) and the
    names of the steps it reuses (none with `reuse_steps=False`, `taskforge retry --no-reuse`).
    Used by `taskforge retry` (cli/runs.plan_retry) and the web API's retry."""
    old_name = str(old["metadata"]["name"])
    status, spec = old.get("status") or {}, old.get("spec") or {}
    phase = status.get("phase") or "Pending"
    if phase == "Succeeded":
        raise RerunError(f"run {old_name!r} succeeded: nothing to retry")
    if phase not in ("Failed", "Cancelled"):
        raise RerunError(
            f"run {old_name!r} is still {phase}: wait for it to end or cancel it first")
    if spec.get("workflowRef"):
        source: dict[str, Any] = {"workflowRef": spec["workflowRef"]}
    elif spec.get("workflowSpec"):
        source = {"workflowSpec": spec["workflowSpec"]}
    else:
        raise RerunError(f"run {old_name!r} has neither workflowRef nor workflowSpec")
    graph = layout(followed)
    finals = set(graph.finally_steps)
    steps: dict[str, Any] = status.get("steps") or {}
    ordered = [n for n in graph.order if n in steps] + [n for n in steps if n not in graph.order]
    no_reuse = {str(s.get("name")) for s in (followed or {}).get("steps") or []
                if isinstance(s, dict) and s.get("reuseOnRetry") is False}
    reuse: list[dict[str, Any]] = []
    reused: set[str] = set()
    for step in ordered:
        st = steps[step] or {}
        if (reuse_steps and step not in finals and st.get("phase") == "Succeeded"
                and step not in no_reuse
                and all(d in reused for d in graph.deps.get(step, []))):
            reused.add(step)
            entry: dict[str, Any] = {"name": step}
            if st.get("outputs") is not None:
                entry["outputs"] = st["outputs"]
            reuse.append(entry)
    workflow = (old["metadata"].get("labels") or {}).get(LABEL_WORKFLOW) or (
        (spec.get("workflowRef") or {}).get("name") or old_name
    )
    manifest = run_manifest(
        workflow=str(workflow), name=name, source=source, params=spec.get("params"),
        trigger="retry", labels={LABEL_RETRY_OF: label_value(old_name)}, reuse=reuse,
    )
    return manifest, [r["name"] for r in reuse]
