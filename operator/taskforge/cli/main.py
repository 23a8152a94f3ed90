"""The `taskforge` command (also installed as `kubectl-taskforge`, a kubectl plugin).

This module only assembles the app: the global cluster options, the commands, and the error
handling of `errors.Group`. The commands are loaded lazily: the root help imports typer and
nothing else (no kubernetes client, no pydantic models, and no rich: help is click's plain
text, as `rich_markup_mode=None` keeps typer's rich formatter, ~200 ms of imports, out); a
command's module is imported when that command runs, when its own help is asked for, or
when the shell completes its arguments. `taskforge --version` and, at 80 columns or more,
`taskforge --help` are answered before typer is imported (see __init__.py). The root help
lists the commands from `COMMANDS` (a test checks each summary against the command's
docstring).

Exit codes (also in the root help): 0 ok, 1 an error (printed on one line), 2 a usage
error, 3 a run that failed or was cancelled (`watch`, `run --watch`, `retry --watch`). A
closed pipe (`taskforge logs RUN | head`) ends quietly with 0 (see `errors.Group`).
"""

from __future__ import annotations

import importlib
from typing import Annotated, Any

import typer
import typer._completion_classes
from typer._coercion import PassThroughRuntimeParam
from typer.core import TyperCommand, _TyperParameter
from typer.models import CommandInfo

from taskforge.cli import prog_name
from taskforge.cli.errors import Group
from taskforge.cli.options import ClusterOptions, ContextOpt, KubeconfigOpt, NamespaceOpt

# name -> (module, attribute, the one-line summary the root help shows)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("taskforge.cli.create", "run",
            "Start a run of a Workflow (a WorkflowRun with trigger manual)."),
    "list": ("taskforge.cli.listing", "list_",
             "List workflows (steps, schedule, last run, validity) or runs (phase, progress, "
             "age)."),
    "get": ("taskforge.cli.show", "get",
            "Show a run: phase, workflow, params, conditions, and its steps in DAG order."),
    "logs": ("taskforge.cli.logs", "logs",
             "Print the logs of a run's step pods (the latest attempt of each by default)."),
    "watch": ("taskforge.cli.watching", "watch",
              "Show a run live until it ends; exit 0 if it Succeeded, 3 otherwise."),
    "cancel": ("taskforge.cli.create", "cancel",
               "Cancel a run: running steps stop, finally steps still run (sets spec.cancel)."),
    "retry": ("taskforge.cli.create", "retry",
              "Start a new run of RUN's workflow and params."),
    "approve": ("taskforge.cli.approve", "approve",
                "Approve a run's approval step (adds it to spec.approvals; RBAC: patch "
                "workflowruns)."),
    "reject": ("taskforge.cli.approve", "reject",
               "Reject a run's approval step: it fails, and with it the run (unless "
               "continueOnFailure)."),
    "validate": ("taskforge.cli.validating", "validate",
                 "Check Workflow and WorkflowRun manifests offline (no cluster); exit 1 on any "
                 "error."),
    "dlq": ("taskforge.cli.dlq", "app", "The dead-letter stream: steps that failed for good."),
    "ui": ("taskforge.cli.ui", "ui",
           "Serve the web UI and API on 127.0.0.1 as your kubeconfig's user."),
}
EXIT_CODES = (
    "Exit codes: 0 ok; 1 error; 2 usage error; 3 the run failed or was cancelled "
    "(watch, run --watch, retry --watch)."
)


def _one_line(text: str) -> str:
    return " ".join(text.split())


# typer passes each completion's description through rich (rich_utils.rich_render_text),
# which wraps it at 80 columns: fish then cut "List workflows ... progress," at the break
# and zsh got a newline inside its _arguments spec, and every TAB imported rich's help
# formatter (~200 ms). The help here carries no rich markup (rich_markup_mode=None below),
# so the description goes as it is, on one line. tests/e2e/test_cli_completion.py drives
# bash, zsh and fish.
typer._completion_classes._sanitize_help_text = _one_line

_process_value = _TyperParameter.process_value


def _process_absent_value(self: _TyperParameter, ctx: Any, value: Any) -> Any:
    """An option given no value keeps it without typer 0.29 building its pydantic
    TypeAdapter, whose import and build cost ~0.5 s of CPU: click processes every option of
    the root group before it hands `taskforge CMD --help` to CMD, so each help paid that.
    For None, typer's RuntimeParam.coerce returns None (or () for a repeatable option)
    whatever the coercion, which is what the pass-through coercion gives here; the real
    one is still built for the first value. tests/unit/test_cli_main.py checks that no
    command's help imports pydantic, so a typer upgrade that moves this is noticed."""
    if value is not None or self._runtime_param is not None:
        return _process_value(self, ctx, value)
    descriptor = self.type_descriptor
    self._runtime_param = PassThroughRuntimeParam(
        parameter_info=descriptor.parameter_info, annotation=descriptor.annotation)
    try:
        return _process_value(self, ctx, value)
    finally:
        self._runtime_param = None


_TyperParameter.process_value = _process_absent_value  # type: ignore[method-assign]


class LazyGroup(Group):
    """A root group whose commands are imported on first use (see the module docstring)."""

    _stubs_only = False

    def list_commands(self, ctx: Any) -> list[str]:
        return [*COMMANDS, *(n for n in self.commands if n not in COMMANDS)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return self.commands.get(cmd_name)
        module, attr, summary = COMMANDS[cmd_name]
        if self._stubs_only:  # listing for the root help: the summary is all it needs
            return TyperCommand(cmd_name, help=summary, short_help=summary)
        target = getattr(importlib.import_module(module), attr)
        if isinstance(target, typer.Typer):
            command: Any = typer.main.get_group(target)
        else:
            command = typer.main.get_command_from_info(
                CommandInfo(name=cmd_name, callback=target),
                pretty_exceptions_short=app.pretty_exceptions_short,
                rich_markup_mode=app.rich_markup_mode,
            )
        command.name = cmd_name
        self.commands[cmd_name] = command
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._stubs_only = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._stubs_only = False

    def shell_complete(self, ctx: Any, incomplete: str) -> Any:
        # Completing a command name needs the names only, not every module.
        self._stubs_only = True
        try:
            return super().shell_complete(ctx, incomplete)
        finally:
            self._stubs_only = False


app = typer.Typer(
    cls=LazyGroup,
    name="taskforge",
    help="Run and inspect Taskforge workflows on Kubernetes.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: rich's help formatter costs ~200 ms a start
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from taskforge.cli import version  # noqa: PLC0415

        print(version())
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


def main() -> None:
    """Console-script entry point; as `kubectl-taskforge`, help reads `kubectl taskforge`."""
    app(prog_name=prog_name())


if __name__ == "__main__":  # pragma: no cover
    main()
