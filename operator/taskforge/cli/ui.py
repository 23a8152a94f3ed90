"""`taskforge ui`: the web UI and its API on this machine, acting as your kubeconfig's user.

The same server as the chart's UI Deployment (`taskforge.web`), in local mode: it listens
on 127.0.0.1 only, makes every Kubernetes call with the kubeconfig's credentials (so it can
do exactly what you can with kubectl), asks SelfSubjectAccessReview to decide which buttons
to show, and accepts only the browser that opened the printed URL (a random secret, then an
HttpOnly cookie). It runs as its own process (`python -m taskforge.web --local`): the
server needs aiohttp and the kubernetes client, which the CLI's base install leaves out.
Dead letters need REDIS_URL here (an admin's path); teams use the cluster's server.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Annotated

import typer

from taskforge.cli.errors import CliError
from taskforge.cli.options import ClusterOptions, ContextOpt, KubeconfigOpt


def ui(
    ctx: typer.Context,
    *,
    port: Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="Port on 127.0.0.1 (0: any free one).")] = 8765,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Serve the web UI and API on 127.0.0.1 as your kubeconfig's user."""
    missing = [m for m in ("aiohttp", "kubernetes", "prometheus_client")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise CliError(f"taskforge ui runs the web server, which needs {', '.join(missing)}:"
                       " pip install 'taskforge[operator]'")
    base = ctx.find_root().obj
    options = ClusterOptions(kubeconfig, context, None).over(
        base if isinstance(base, ClusterOptions) else ClusterOptions())
    argv = [sys.executable, "-m", "taskforge.web", "--local", "--port", str(port)]
    if options.kubeconfig is not None:
        if not options.kubeconfig.exists():
            raise CliError(f"kubeconfig {options.kubeconfig} does not exist")
        argv += ["--kubeconfig", str(options.kubeconfig)]
    if options.context:
        argv += ["--context", options.context]
    sys.stdout.flush()
    os.execv(sys.executable, argv)
