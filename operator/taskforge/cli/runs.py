"""What the commands know about runs: their workflow spec, step order, and new run manifests.

The step order, run manifests and the rules of a retry are the engine's (`engine/rerun.py`),
shared with the web API, so `taskforge retry` and the UI's Retry make the same run.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from taskforge.cli.client import WORKFLOWS, Cluster
from taskforge.cli.errors import CliError
from taskforge.engine import dag
from taskforge.engine.rerun import (
    LABEL_RETRY_OF,
    Layout,
    RerunError,
    layout,
    retry_manifest,
    run_manifest,
)

engine_dag: ModuleType = dag  # `validate` checks specs with the operator's own DAG rules
__all__ = ["LABEL_RETRY_OF", "Layout", "RetryPlan", "layout", "plan_retry", "run_manifest",
           "spec_of"]


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
    wf_spec = spec_of(cluster, old)
    try:
        manifest, reused = retry_manifest(old, wf_spec, name, reuse_steps=reuse_steps)
    except RerunError as exc:
        raise CliError(str(exc)) from exc
    graph = layout(wf_spec)
    steps: dict[str, Any] = (old.get("status") or {}).get("steps") or {}
    ordered = [n for n in graph.order if n in steps] + [n for n in steps if n not in graph.order]
    rerun = [n for n in ordered if n not in graph.finally_steps and n not in reused]
    return RetryPlan(manifest, reused, rerun, _drift(cluster, old))


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
