"""`get`: one run as a tree (`list` is in listing.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from taskforge import GROUP
from taskforge.cli.archive import (
    ArchiveUrlOpt,
    Found,
    UidOpt,
    fallback_error,
    show_archived,
    source,
)
from taskforge.cli.completion import run_names
from taskforge.cli.errors import CliError
from taskforge.cli.options import RUNS, ContextOpt, KubeconfigOpt, NamespaceOpt
from taskforge.cli.webapi import DEFAULT_SERVICE, ServerOpt, ServiceOpt, TokenOpt

if TYPE_CHECKING:  # `get --help` must not load the client: imported in the body
    from taskforge.cli.client import Cluster


class DataOutput(StrEnum):
    json = "json"
    yaml = "yaml"


class GetOutput(StrEnum):
    json = "json"
    yaml = "yaml"
    wide = "wide"
    name = "name"


OutputOpt = Annotated[
    GetOutput | None,
    typer.Option("--output", "-o", help="json or yaml (the object), name (kind/name, as"
                 " kubectl prints it), or wide (the view plus each step's Job and times).",
                 show_default=False),
]
NoHeadersOpt = Annotated[
    bool, typer.Option("--no-headers", help="Print the step lines only (no run header).")
]


def with_whole_results(cluster: Cluster, run: dict[str, Any]) -> dict[str, Any]:
    """The run with each stored result in place of its summary in `outputs`."""
    from taskforge.adapters.resultpack import ResultReadError, read_result  # noqa: PLC0415

    steps = (run.get("status") or {}).get("steps") or {}
    for name, step in steps.items():
        ref = (step or {}).get("result")
        if not ref:
            continue
        try:
            data = read_result(cluster.namespace, ref["configMap"], ref["sha256"],
                               cluster.config_map)
        except ResultReadError as exc:
            raise CliError(f"step {name!r}: the stored result cannot be read: {exc}") from None
        step["outputs"] = json.loads(data)
    return run


def get(
    ctx: typer.Context,
    *,
    run: Annotated[str, typer.Argument(help="Name of the WorkflowRun.", show_default=False,
                                       autocompletion=run_names)],
    output: OutputOpt = None,
    no_headers: NoHeadersOpt = False,
    results: Annotated[
        bool, typer.Option("--results", help="Show stored results whole (results over a"
                           " step's share of status are kept in a ConfigMap; status holds a"
                           " summary).")
    ] = False,
    uid: UidOpt = None,
    server: ServerOpt = None,
    service: ServiceOpt = DEFAULT_SERVICE,
    token: TokenOpt = None,
    archive_url: ArchiveUrlOpt = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Show a run: phase, workflow, params, conditions, and its steps in DAG order. A run
    gone from the cluster is shown from the run archive (through the web API), if kept."""
    from taskforge.cli.client import connect  # noqa: PLC0415
    from taskforge.cli.render import console, emit  # noqa: PLC0415
    from taskforge.cli.run_view import run_view  # noqa: PLC0415
    from taskforge.cli.runs import layout, spec_of  # noqa: PLC0415

    cluster = connect(ctx, namespace, context, kubeconfig)
    try:
        obj = cluster.get(RUNS, run)
        if uid and obj["metadata"].get("uid") != uid:  # an earlier run of that name
            raise CliError(f"run {run!r} in the cluster has another uid than {uid}")
    except CliError as exc:  # gone from the cluster: the run archive may hold it
        src = source(ctx, context, kubeconfig, server=server, service=service, token=token,
                     archive_url=archive_url)
        try:
            found = show_archived(src, cluster.namespace, run,
                                  output.value if output else None, uid)
        except CliError as why:
            raise fallback_error(exc, why, src) from None
        if found is Found.SHOWN:
            return
        raise
    if results:
        obj = with_whole_results(cluster, obj)
    if output is GetOutput.name:
        print(f"workflowrun.{GROUP}/{obj['metadata']['name']}")
        return
    if output in (GetOutput.json, GetOutput.yaml):
        assert output is not None
        emit(obj, output.value)
        return
    lay = layout(spec_of(cluster, obj))
    console().print(run_view(obj, lay.order, lay.finally_steps, lay.deps, datetime.now(UTC),
                             wide=output is GetOutput.wide, headers=not no_headers))
