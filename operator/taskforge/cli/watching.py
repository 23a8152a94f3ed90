"""Following a run live until it ends: `taskforge watch`, `run --watch`, `retry --watch`.

The view is driven by a watch on the run object (one long request, no polling); rich's
Live redraws it a few times a second so durations and retry countdowns tick between
events. On a terminal that is not a TTY (a pipe, CI), Live prints the final view once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from taskforge.cli.completion import run_names
from taskforge.cli.errors import CliError
from taskforge.cli.options import RUNS, ContextOpt, KubeconfigOpt, NamespaceOpt

if TYPE_CHECKING:  # the command's help must not load rich or the client: imported in bodies
    from rich.console import RenderableType

    from taskforge.cli.client import Cluster
    from taskforge.cli.runs import Layout


class _RunView:
    """The latest state of the run, rendered afresh (with a fresh `now`) on every refresh."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.run: dict[str, Any] | None = None
        self.layout: Layout | None = None
        self.pinned = False

    def update(self, run: dict[str, Any]) -> None:
        self.run = run
        pinned = bool((run.get("status") or {}).get("workflowSpec"))
        # Recompute the layout once the operator pins the spec: it may differ from the
        # Workflow as it is now, and it is what the run really executes.
        if self.layout is None or (pinned and not self.pinned):
            from taskforge.cli.runs import layout, spec_of  # noqa: PLC0415

            self.layout = layout(spec_of(self.cluster, run))
            self.pinned = pinned

    def __rich__(self) -> RenderableType:
        from rich.text import Text  # noqa: PLC0415

        from taskforge.cli.run_view import run_view  # noqa: PLC0415

        if self.run is None or self.layout is None:
            return Text("waiting for the run…", style="dim")
        lay = self.layout
        return run_view(self.run, lay.order, lay.finally_steps, lay.deps, datetime.now(UTC))


def follow(cluster: Cluster, name: str, *, live: bool = True) -> dict[str, Any]:
    """Watch the run until it is terminal and return its final state.

    With `live=False` nothing is drawn (for `-o json|yaml`, which print the final object).
    """
    from rich.live import Live  # noqa: PLC0415

    from taskforge.cli.render import console, is_terminal  # noqa: PLC0415

    view = _RunView(cluster)
    final: dict[str, Any] | None = None
    out = console()
    display = Live(view, console=out, refresh_per_second=4, auto_refresh=live)
    if live:
        display.start()
    try:
        for run in cluster.watch(RUNS, name):
            if run is None:
                raise CliError(f"run {name!r} was deleted while being watched")
            view.update(run)
            if live:
                display.refresh()
            if is_terminal(run):
                final = run
                break
    finally:
        if live:
            display.stop()
            if not out.is_terminal:
                out.line()  # Live prints the last frame without a final newline off a TTY
    assert final is not None  # the watch only ends by returning a terminal run or raising
    return final


RUN_FAILED = 3


def exit_code(run: dict[str, Any]) -> int:
    """0 for Succeeded, else RUN_FAILED: distinct from 1 (the CLI's own error, e.g. the run
    was not found) and 2 (usage), so a script can tell "the run failed" from "the command
    failed"."""
    return 0 if (run.get("status") or {}).get("phase") == "Succeeded" else RUN_FAILED


def watch(
    ctx: typer.Context,
    *,
    run: Annotated[str, typer.Argument(help="Name of the WorkflowRun.", show_default=False,
                                       autocompletion=run_names)],
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Show a run live until it ends; exit 0 if it Succeeded, 3 otherwise."""
    from taskforge.cli.client import connect  # noqa: PLC0415

    cluster = connect(ctx, namespace, context, kubeconfig)
    final = follow(cluster, run)
    raise typer.Exit(exit_code(final))
