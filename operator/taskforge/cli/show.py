"""`get`: one run as a tree (`list` is in listing.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import typer

from taskforge.cli.client import RUNS, connect
from taskforge.cli.completion import run_names
from taskforge.cli.options import ContextOpt, KubeconfigOpt, NamespaceOpt
from taskforge.cli.render import (
    console,
    emit,
    run_view,
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
