"""What the commands know about runs: their workflow spec, step order, and new run manifests.

The step order comes from the engine's DAG when `taskforge.engine.dag` is importable (the
same order the operator plans in), else from the spec's own order; a CLI that must also
run next to an older or partial engine should not depend on it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from taskforge import API_VERSION
from taskforge.api.workflow import WorkflowSpec
from taskforge.cli.client import WORKFLOWS, Cluster
from taskforge.cli.errors import CliError
from taskforge.engine.naming import LABEL_WORKFLOW, label_value

engine_dag: ModuleType | None
try:
    from taskforge.engine import dag as engine_dag
except ImportError:  # pragma: no cover - the engine's DAG is optional for the CLI
    engine_dag = None

LABEL_RETRY_OF = "taskforge.io/retry-of"
_GENERATE_NAME_MAX = 58  # 63 minus the 5 random characters the apiserver appends


@dataclass(frozen=True)
class Layout:
    """Steps in DAG order (finally steps last), which are finally steps, and their deps."""

    order: list[str] = field(default_factory=list)
    finally_steps: list[str] = field(default_factory=list)
    deps: dict[str, list[str]] = field(default_factory=dict)


def spec_of(cluster: Cluster, run: dict[str, Any]) -> dict[str, Any] | None:
    """The workflow spec the run follows: pinned copy, inline spec, else the current Workflow."""
    status, spec = run.get("status") or {}, run.get("spec") or {}
    for candidate in (status.get("workflowSpec"), spec.get("workflowSpec")):
        if isinstance(candidate, dict):
            return candidate
    ref = (spec.get("workflowRef") or {}).get("name")
    if not ref:
        return None
    try:
        workflow = cluster.get(WORKFLOWS, ref)
    except CliError:
        return None  # deleted since: the run is still worth showing
    found = workflow.get("spec")
    return found if isinstance(found, dict) else None


def layout(spec: dict[str, Any] | None) -> Layout:
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
    if engine_dag is not None:
        # An invalid or newer spec keeps the spec's own order.
        with contextlib.suppress(ValidationError, ValueError):
            dag = engine_dag.build(WorkflowSpec.model_validate(spec))
            order, final = list(dag.order), list(dag.final)
    return Layout(order=order, finally_steps=final, deps=deps)


def run_manifest(
    *,
    workflow: str,
    name: str | None,
    source: dict[str, Any],
    params: dict[str, Any] | None,
    trigger: str,
    labels: dict[str, str] | None = None,
    reuse: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A WorkflowRun; `source` is {"workflowRef": ...} or {"workflowSpec": ...}."""
    meta: dict[str, Any] = {
        "labels": {LABEL_WORKFLOW: label_value(workflow), **(labels or {})},
    }
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


@dataclass(frozen=True)
class RetryPlan:
    manifest: dict[str, Any]
    reused: list[str]
    rerun: list[str]
    warning: str | None = None


def plan_retry(
    cluster: Cluster, old: dict[str, Any], name: str | None, *, reuse_steps: bool = True
) -> RetryPlan:
    """A new run of the same workflow and params that reuses the old run's successes.

    What a retry reuses is a step's recorded outputs, never its side effects: the old run's
    finally steps may have undone them (examples/finally-cleanup.yaml removes the directory
    `prepare` made). So a step is reused only if it Succeeded, allows it (`reuseOnRetry`,
    default true) and every step it depends on is reused too (outputs computed from an
    upstream that now runs again would be stale). Skipped steps are re-evaluated (their
    `when` may depend on a step that now runs again), finally steps always run again (they
    clean up and report), and `reuse_steps=False` (--no-reuse) runs everything again.
    """
    old_name = old["metadata"]["name"]
    status, spec = old.get("status") or {}, old.get("spec") or {}
    phase = status.get("phase") or "Pending"
    if phase == "Succeeded":
        raise CliError(f"run {old_name!r} succeeded: nothing to retry")
    if phase not in ("Failed", "Cancelled"):
        raise CliError(
            f"run {old_name!r} is still {phase}: wait for it to end or cancel it first"
        )
    if spec.get("workflowRef"):
        source: dict[str, Any] = {"workflowRef": spec["workflowRef"]}
    elif spec.get("workflowSpec"):
        source = {"workflowSpec": spec["workflowSpec"]}
    else:
        raise CliError(f"run {old_name!r} has neither workflowRef nor workflowSpec")
    wf_spec = spec_of(cluster, old)
    steps_layout = layout(wf_spec)
    finals = set(steps_layout.finally_steps)
    steps: dict[str, Any] = status.get("steps") or {}
    ordered = [n for n in steps_layout.order if n in steps] + [
        n for n in steps if n not in steps_layout.order
    ]
    reuse: list[dict[str, Any]] = []
    rerun: list[str] = []
    no_reuse = {str(s.get("name")) for s in (wf_spec or {}).get("steps") or []
                if isinstance(s, dict) and s.get("reuseOnRetry") is False}
    reused: set[str] = set()
    for step in ordered:
        if step in finals:
            continue
        st = steps[step] or {}
        if (reuse_steps and st.get("phase") == "Succeeded" and step not in no_reuse
                and all(d in reused for d in steps_layout.deps.get(step, []))):
            reused.add(step)
            entry: dict[str, Any] = {"name": step}
            if st.get("outputs") is not None:
                entry["outputs"] = st["outputs"]
            reuse.append(entry)
        else:
            rerun.append(step)
    workflow = (old["metadata"].get("labels") or {}).get(LABEL_WORKFLOW) or (
        (spec.get("workflowRef") or {}).get("name") or old_name
    )
    manifest = run_manifest(
        workflow=str(workflow),
        name=name,
        source=source,
        params=spec.get("params"),
        trigger="retry",
        labels={LABEL_RETRY_OF: label_value(old_name)},
        reuse=reuse,
    )
    return RetryPlan(manifest, [r["name"] for r in reuse], rerun, _drift(cluster, old))


def _drift(cluster: Cluster, old: dict[str, Any]) -> str | None:
    """A warning when the referenced Workflow changed since the old run pinned it."""
    ref = ((old.get("spec") or {}).get("workflowRef") or {}).get("name")
    pinned = ((old.get("status") or {}).get("workflow") or {}).get("generation")
    if not ref or pinned is None:
        return None
    try:
        current = cluster.get(WORKFLOWS, ref)["metadata"].get("generation")
    except CliError:
        return f"workflows.taskforge.io {ref!r} no longer exists; the new run will fail to start"
    if current is not None and current != pinned:
        return (
            f"workflows.taskforge.io {ref!r} changed since the old run (generation {pinned} ->"
            f" {current});"
            " reused outputs come from the old version"
        )
    return None
