"""Read-only commands: `list` (workflows or runs) and `get` (one run as a tree)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer

from taskforge.cli.client import RUNS, WORKFLOWS, connect
from taskforge.cli.completion import run_names
from taskforge.cli.errors import CliError
from taskforge.cli.options import ContextOpt, KubeconfigOpt, NamespaceOpt
from taskforge.cli.render import (
    as_list,
    console,
    emit,
    parse_time,
    run_view,
    runs_table,
    workflows_table,
)
from taskforge.cli.runs import layout, spec_of


class DataOutput(StrEnum):
    json = "json"
    yaml = "yaml"


OutputOpt = Annotated[
    DataOutput | None,
    typer.Option("--output", "-o", help="Print the data as json or yaml instead of a view.",
                 show_default=False),
]
WORKFLOW_REF_FIELD = "spec.workflowRef.name"
# The CRDs' names and short names (api/crdgen.py), as kubectl accepts them; wf/wfr are the
# CLI's older aliases, kept so scripts that used them go on working.
_KINDS = {
    "runs": RUNS, "run": RUNS, "workflowruns": RUNS, "workflowrun": RUNS,
    "tfr": RUNS, "tfrun": RUNS, "wfr": RUNS,
    "workflows": WORKFLOWS, "workflow": WORKFLOWS, "tfw": WORKFLOWS, "tfwf": WORKFLOWS,
    "wf": WORKFLOWS,
}


def _created(obj: dict[str, Any]) -> datetime:
    return parse_time(obj.get("metadata", {}).get("creationTimestamp")) or datetime.min.replace(
        tzinfo=UTC
    )


def _last_runs(
    workflows: list[dict[str, Any]], runs: list[dict[str, Any]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Each workflow's newest run, as the operator records it (`status.lastRun`), whoever
    created the run; the run's own object when it still exists, else just its name."""
    by_name = {(r["metadata"].get("namespace", ""), r["metadata"]["name"]): r for r in runs}
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for wf in workflows:
        namespace = wf["metadata"].get("namespace", "")
        name = (wf.get("status") or {}).get("lastRun")
        if name:
            last[(namespace, wf["metadata"]["name"])] = by_name.get(
                (namespace, name), {"metadata": {"name": name, "namespace": namespace}})
    return last


def list_(
    ctx: typer.Context,
    *,
    kind: Annotated[
        str,
        typer.Argument(metavar="[workflows|runs]",
                       help="What to list: workflows (tfw) or runs (tfr; the default).",
                       show_default=False),
    ] = "runs",
    workflow: Annotated[
        str | None,
        typer.Option("--workflow", "-w", help="Only runs of this workflow.", show_default=False),
    ] = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="List across all namespaces.")
    ] = False,
    output: OutputOpt = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """List workflows (steps, schedule, last run, validity) or runs (phase, progress, age)."""
    plural = _KINDS.get(kind.lower())
    if plural is None:
        raise CliError(f"cannot list {kind!r}: choose workflows or runs")
    cluster = connect(ctx, namespace, context, kubeconfig)
    now = datetime.now(UTC)
    if plural == RUNS:
        # A field selector (the CRD's selectableFields), not a label: runs made with kubectl
        # or by GitOps carry no label, only their spec.
        selector = f"{WORKFLOW_REF_FIELD}={workflow}" if workflow else None
        runs = sorted(
            cluster.list_objects(RUNS, all_namespaces=all_namespaces, field_selector=selector),
            key=_created,
        )
        if output is not None:
            emit(as_list(runs), output.value)
        elif not runs:
            where = "any namespace" if all_namespaces else f"namespace {cluster.namespace}"
            print(f"No runs found in {where}.")
        else:
            console().print(runs_table(runs, now, namespaces=all_namespaces))
        return
    workflows = cluster.list_objects(WORKFLOWS, all_namespaces=all_namespaces)
    if workflow:
        workflows = [w for w in workflows if w["metadata"]["name"] == workflow]
    workflows.sort(key=lambda w: (w["metadata"].get("namespace", ""), w["metadata"]["name"]))
    if output is not None:
        emit(as_list(workflows), output.value)
        return
    if not workflows:
        where = "any namespace" if all_namespaces else f"namespace {cluster.namespace}"
        print(f"No workflows found in {where}.")
        return
    last = _last_runs(workflows, cluster.list_objects(RUNS, all_namespaces=all_namespaces))
    console().print(workflows_table(workflows, last, now, namespaces=all_namespaces))


def get(
    ctx: typer.Context,
    *,
    run: Annotated[str, typer.Argument(help="Name of the WorkflowRun.", show_default=False,
                                       autocompletion=run_names)],
    output: OutputOpt = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Show a run: phase, workflow, params, conditions, and its steps in DAG order."""
    cluster = connect(ctx, namespace, context, kubeconfig)
    obj = cluster.get(RUNS, run)
    if output is not None:
        emit(obj, output.value)
        return
    lay = layout(spec_of(cluster, obj))
    console().print(run_view(obj, lay.order, lay.finally_steps, lay.deps, datetime.now(UTC)))
