"""Shell completion of run and workflow names, read from the cluster.

typer's own completion (`taskforge --install-completion` for bash, zsh and fish, or
`--show-completion` to print the script) completes commands and options; these callbacks
add the names of the resources a command takes. While the shell completes, click parses
the line without running any callback, so the cluster options are read from the parsed
parameters of the command and of the root (`-n`, `--context`, `--kubeconfig`, typed before
or after the command). Any failure (no cluster, no kubeconfig, no permission) completes
nothing: a completion must never print an error into the person's prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from taskforge.cli.options import RUNS, WORKFLOWS, ClusterOptions


def _options(ctx: Any) -> ClusterOptions:
    def pick(params: dict[str, Any]) -> ClusterOptions:
        kubeconfig = params.get("kubeconfig")
        return ClusterOptions(
            kubeconfig=Path(kubeconfig) if kubeconfig else None,
            context=params.get("context"),
            namespace=params.get("namespace"),
        )

    return pick(ctx.params).over(pick(ctx.find_root().params))


def names(ctx: typer.Context, plural: str, incomplete: str) -> list[str]:
    """The names of `plural` in the namespace the command means that start with `incomplete`."""
    try:
        from taskforge.cli.client import Cluster  # noqa: PLC0415 (commands' help must not load it)

        cluster = Cluster.from_options(_options(ctx))
        found = [o["metadata"]["name"] for o in cluster.list_objects(plural)]
    except Exception:  # no cluster or no permission: nothing to offer
        return []
    return sorted(n for n in found if n.startswith(incomplete))


def run_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Completes a WorkflowRun's name."""
    return names(ctx, RUNS, incomplete)


def workflow_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Completes a Workflow's name."""
    return names(ctx, WORKFLOWS, incomplete)
