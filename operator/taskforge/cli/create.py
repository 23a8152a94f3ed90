"""Commands that change runs: `run` (start one), `retry` (start one from a failed one) and
`cancel`.

They only write the WorkflowRun's spec (or create one); the operator does the rest and
reports in the status, which `--watch` follows.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from taskforge.cli.completion import run_names, workflow_names
from taskforge.cli.options import RUNS, WORKFLOWS, ContextOpt, KubeconfigOpt, NamespaceOpt

if TYPE_CHECKING:  # the commands' help must not load the client or the models: see bodies
    from taskforge.cli.client import Cluster


class CreateOutput(StrEnum):
    name = "name"
    json = "json"
    yaml = "yaml"


OutputOpt = Annotated[
    CreateOutput | None,
    typer.Option(
        "--output", "-o",
        help="name: print workflowrun.taskforge.io/NAME; json|yaml: the created run"
        " (with --watch: the final run).",
        show_default=False,
    ),
]
WatchOpt = Annotated[
    bool,
    typer.Option("--watch", help="Follow the run until it ends; exit 3 unless it Succeeded."),
]
NameOpt = Annotated[
    str | None,
    typer.Option("--name", help="Name of the run (default: generated, WORKFLOW-xxxxx).",
                 show_default=False),
]


def _report(cluster: Cluster, created: dict[str, Any], output: CreateOutput | None,
            watch: bool, note: str) -> None:
    """Print what was created, then follow it if asked; exits with the run's outcome."""
    from taskforge.cli.render import emit  # noqa: PLC0415
    from taskforge.cli.watching import exit_code, follow  # noqa: PLC0415

    name = created["metadata"]["name"]
    if output is CreateOutput.name:
        print(f"workflowrun.taskforge.io/{name}")
    elif output is None:
        print(f"workflowrun.taskforge.io/{name} created{note}")
    elif not watch:
        emit(created, output.value)
    if not watch:
        return
    sys.stdout.flush()
    final = follow(cluster, name, live=output is not CreateOutput.json
                   and output is not CreateOutput.yaml)
    if output in (CreateOutput.json, CreateOutput.yaml):
        assert output is not None
        emit(final, output.value)
    raise typer.Exit(exit_code(final))


def run(
    ctx: typer.Context,
    *,
    workflow: Annotated[str, typer.Argument(help="Name of the Workflow to run.",
                                            show_default=False,
                                            autocompletion=workflow_names)],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="A param as key=value; the value is a YAML scalar"
                     " (-p n=3 is a number, -p n='\"3\"' a string). Repeatable.",
                     show_default=False),
    ] = None,
    param_file: Annotated[
        Path | None,
        typer.Option("--param-file", help="YAML file with a mapping of params (-p wins).",
                     show_default=False),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Start at this time (RFC 3339, e.g. 2026-12-01T09:00:00Z;"
                     " without an offset: local time). Pending (Scheduled) until then.",
                     show_default=False),
    ] = None,
    in_: Annotated[
        str | None,
        typer.Option("--in", help="Start this long after creation, e.g. 10m or 1h30m.",
                     show_default=False),
    ] = None,
    priority: Annotated[
        int | None,
        typer.Option("--priority", help="Priority (-1000..1000; default: the workflow's):"
                     " higher goes first when limits make runs wait.", show_default=False),
    ] = None,
    watch: WatchOpt = False,
    name: NameOpt = None,
    output: OutputOpt = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Start a run of a Workflow (a WorkflowRun with trigger manual), now or later."""
    from taskforge.cli.client import connect  # noqa: PLC0415
    from taskforge.cli.params import load_param_file, parse_assignments, resolve  # noqa: PLC0415
    from taskforge.cli.runs import run_manifest  # noqa: PLC0415
    from taskforge.cli.when import start_fields, start_note  # noqa: PLC0415

    timing = start_fields(at, in_, priority)
    given = load_param_file(param_file) if param_file else {}
    given.update(parse_assignments(param or []))
    cluster = connect(ctx, namespace, context, kubeconfig)
    wf = cluster.get(WORKFLOWS, workflow)
    params = resolve(given, (wf.get("spec") or {}).get("params"), workflow)
    manifest = run_manifest(
        workflow=workflow,
        name=name,
        source={"workflowRef": {"name": workflow}},
        params=params,
        trigger="manual",
    )
    manifest["spec"].update(timing)
    created = cluster.create(RUNS, manifest)
    _report(cluster, created, output, watch, start_note(timing))


def retry(
    ctx: typer.Context,
    *,
    run_name: Annotated[str, typer.Argument(metavar="RUN", help="The failed or cancelled run.",
                                            show_default=False,
                                            autocompletion=run_names)],
    watch: WatchOpt = False,
    name: NameOpt = None,
    no_reuse: Annotated[
        bool, typer.Option("--no-reuse", help="Run every step again; reuse no outputs.")
    ] = False,
    output: OutputOpt = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Start a new run of RUN's workflow and params, reusing the outputs of steps that
    Succeeded (and whose upstream steps are reused too), unless a step says
    `reuseOnRetry: false`. Only outputs are reused, never side effects.

    The other steps run again (trigger retry, label taskforge.io/retry-of).
    """
    from taskforge.cli.client import connect  # noqa: PLC0415
    from taskforge.cli.runs import plan_retry  # noqa: PLC0415

    cluster = connect(ctx, namespace, context, kubeconfig)
    old = cluster.get(RUNS, run_name)
    plan = plan_retry(cluster, old, name, reuse_steps=not no_reuse)
    if plan.warning:
        print(f"warning: {plan.warning}", file=sys.stderr)
    created = cluster.create(RUNS, plan.manifest)
    reused = ", ".join(plan.reused) or "nothing"
    _report(cluster, created, output, watch, f" (retry of {run_name}; reusing {reused})")


def cancel(
    ctx: typer.Context,
    *,
    run_name: Annotated[str, typer.Argument(metavar="RUN", help="The run to cancel.",
                                            show_default=False,
                                            autocompletion=run_names)],
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Cancel a run: running steps stop, finally steps still run (sets spec.cancel)."""
    from taskforge.cli.client import connect  # noqa: PLC0415
    from taskforge.cli.render import is_terminal  # noqa: PLC0415

    cluster = connect(ctx, namespace, context, kubeconfig)
    current = cluster.get(RUNS, run_name)
    if is_terminal(current):
        phase = current["status"]["phase"]
        print(f"workflowrun.taskforge.io/{run_name} already {phase}: nothing to cancel")
        return
    cluster.patch(RUNS, run_name, {"spec": {"cancel": True}})
    print(f"workflowrun.taskforge.io/{run_name} cancel requested")
