"""The `taskforge` command (also installed as `kubectl-taskforge`, a kubectl plugin).

This module only assembles the app: the global cluster options, the commands from their
modules, and the error handling of `errors.Group`.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

import typer

from taskforge.cli import create, dlq, logs, show, validate, watching
from taskforge.cli.client import ClusterOptions, ContextOpt, KubeconfigOpt, NamespaceOpt
from taskforge.cli.errors import Group

app = typer.Typer(
    cls=Group,
    name="taskforge",
    help="Run and inspect Taskforge workflows on Kubernetes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        try:
            print(f"taskforge {version('taskforge')}")
        except PackageNotFoundError:
            print("taskforge (not installed)")
        raise typer.Exit(0)


@app.callback()
def _global(
    ctx: typer.Context,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    _show_version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Run and inspect Taskforge workflows on Kubernetes."""
    ctx.obj = ClusterOptions(kubeconfig=kubeconfig, context=context, namespace=namespace)


app.command("run")(create.run)
app.command("list")(show.list_)
app.command("get")(show.get)
app.command("logs")(logs.logs)
app.command("watch")(watching.watch)
app.command("cancel")(create.cancel)
app.command("retry")(create.retry)
app.command("validate")(validate.validate)
app.add_typer(dlq.app, name="dlq")


def main() -> None:
    """Console-script entry point; as `kubectl-taskforge`, help reads `kubectl taskforge`."""
    prog = Path(sys.argv[0]).name
    app(prog_name="kubectl taskforge" if prog.startswith("kubectl-") else "taskforge")


if __name__ == "__main__":  # pragma: no cover
    main()
