"""The cluster options every command takes, apart from the client so that they cost nothing.

Help (`taskforge --help`, `taskforge CMD --help`) must not import the HTTP client
(lightkube and httpx2, ~0.2 s of CPU): the options every command declares live here, and
the commands import `client` in their bodies, when they talk to the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

_PANEL = "Cluster options"
RUNS = "workflowruns"
WORKFLOWS = "workflows"
"""The plurals of the two kinds, here rather than in client.py so that the modules which
define commands can name them without loading the HTTP client (their help must not)."""

KubeconfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--kubeconfig",
        help="Kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).",
        show_default=False,
        rich_help_panel=_PANEL,
    ),
]
ContextOpt = Annotated[
    str | None,
    typer.Option(
        "--context", help="Kubeconfig context (default: the current one).", show_default=False,
        rich_help_panel=_PANEL,
    ),
]
NamespaceOpt = Annotated[
    str | None,
    typer.Option(
        "--namespace", "-n",
        help="Namespace (default: the context's, else 'default').", show_default=False,
        rich_help_panel=_PANEL,
    ),
]


@dataclass(frozen=True)
class ClusterOptions:
    """What the person typed; None means "kubectl's default"."""

    kubeconfig: Path | None = None
    context: str | None = None
    namespace: str | None = None

    def over(self, base: ClusterOptions) -> ClusterOptions:
        """These options where set, else `base`'s (command options beat global ones)."""
        return ClusterOptions(
            kubeconfig=self.kubeconfig or base.kubeconfig,
            context=self.context or base.context,
            namespace=self.namespace or base.namespace,
        )
