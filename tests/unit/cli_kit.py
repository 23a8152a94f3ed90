"""Shared helpers of the offline CLI tests (test_cli_validate.py, test_cli_params.py): manifest
text written to a file, the line a marker is on, `taskforge validate` run in-process.

Not a test module; its one check (no exception other than the exit) carries the output as
its message.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from taskforge.cli.main import app
from typer.testing import CliRunner


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def line(text: str, marker: str, occurrence: int = 1) -> int:
    """1-based line of the `occurrence`-th line containing `marker`."""
    hits = [i for i, t in enumerate(textwrap.dedent(text).splitlines(), 1) if marker in t]
    return hits[occurrence - 1]


def run_validate(*paths: Path | str, stdin: str | None = None) -> tuple[int, str]:
    args = ["validate"]
    for p in paths:
        args += ["-f", str(p)]
    result = CliRunner().invoke(app, args, input=stdin)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output
