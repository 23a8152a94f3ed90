"""The `taskforge` command line (also `kubectl taskforge`): see main.py for the app.

`main` here is the console scripts' entry point. Two answers need no typer, since scripts,
shell prompts and people call them often and typer's import alone is ~90 ms of CPU:
`taskforge --version`, and `taskforge --help` / `-h` on a terminal of 80 columns or more
(or a pipe), which prints the root help typer would print, kept in `_roothelp.py` and
generated from the app (roothelp.py says why and how). Everything else goes to the typer
app in main.py.
"""

from __future__ import annotations

import sys


def version() -> str:
    """The version, from `taskforge.__version__`, which pyproject also builds the
    distribution's from (importlib.metadata would cost ~50 ms of imports)."""
    from taskforge import __version__  # noqa: PLC0415

    return f"taskforge {__version__}"


def prog_name() -> str:
    """As `kubectl-taskforge` (a kubectl plugin), help and usage read `kubectl taskforge`."""
    name = sys.argv[0].replace("\\", "/").rsplit("/", 1)[-1]
    return "kubectl taskforge" if name.startswith("kubectl-") else "taskforge"


def _root_help() -> bool:
    """Print the generated root help if this terminal shows it as typer would."""
    import shutil  # noqa: PLC0415

    if shutil.get_terminal_size().columns < 80:  # click wraps narrower: typer does it
        return False
    from taskforge.cli._roothelp import HELP  # noqa: PLC0415

    try:
        sys.stdout.write(HELP[prog_name()])
        sys.stdout.flush()
    except BrokenPipeError:  # `taskforge --help | head -3`: end quietly, as commands do
        from taskforge.cli.errors import _silence_stdout  # noqa: PLC0415

        _silence_stdout()
    return True


def main() -> None:
    """Console-script entry point."""
    args = sys.argv[1:]
    if args == ["--version"]:
        print(version())
        return
    if args in (["--help"], ["-h"]) and _root_help():
        return
    from taskforge.cli.main import main as app_main  # noqa: PLC0415

    app_main()
