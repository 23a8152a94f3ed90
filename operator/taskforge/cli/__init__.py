"""The `taskforge` command line (also `kubectl taskforge`): see main.py for the app.

`main` here is the console scripts' entry point. `taskforge --version` is answered before
typer is imported (about 90 ms of CPU, most of the command's start-up), since scripts and
shell prompts call it often; everything else goes to the typer app in main.py.
"""

from __future__ import annotations

import sys


def version() -> str:
    """The installed distribution's version."""
    from importlib.metadata import PackageNotFoundError  # noqa: PLC0415 (lazy, see above)
    from importlib.metadata import version as dist_version  # noqa: PLC0415

    try:
        return f"taskforge {dist_version('taskforge')}"
    except PackageNotFoundError:
        return "taskforge (not installed)"


def main() -> None:
    """Console-script entry point."""
    if sys.argv[1:] == ["--version"]:
        print(version())
        return
    from taskforge.cli.main import main as app_main  # noqa: PLC0415

    app_main()
