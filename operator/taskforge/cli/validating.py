"""`taskforge validate`: the command. The checks are in validate.py, imported when the
command runs: its models and YAML loader cost more than half a second, which
`taskforge validate --help` must not pay."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def validate(
    files: Annotated[
        list[Path],
        typer.Option("--filename", "-f", help="Manifest file or directory ('-' for stdin);"
                     " repeatable.", show_default=False),
    ],
) -> None:
    """Check Workflow and WorkflowRun manifests offline (no cluster); exit 1 on any error.

    Runs that name a Workflow given in the same files also get their params checked.
    """
    from taskforge.cli.validate import (  # noqa: PLC0415
        Finding,
        Report,
        check_run_params,
        check_text,
        expand,
    )

    total = Report()
    per_file: list[tuple[str, Report]] = []
    for path in expand(files):
        name = str(path)
        try:
            text = sys.stdin.read() if name == "-" else path.read_text()
        except OSError as exc:
            report = Report([Finding(name, None, "", f"cannot read: {exc.strerror or exc}")])
        else:
            report = check_text(text, name)
        per_file.append((name, report))
        total.merge(report)
    for extra in check_run_params(total):
        next(r for n, r in per_file if n == extra.file).findings.append(extra)
    errors = 0
    for name, report in per_file:
        for finding in sorted(report.findings, key=lambda f: f.line or 0):
            print(finding)
        errors += len(report.findings)
        if report.valid and not report.findings:
            print(f"{name}: valid ({', '.join(report.valid)})")
        elif not report.findings and not report.valid:
            print(f"{name}: no Taskforge documents")
    if errors:
        print(f"{errors} error{'s' if errors != 1 else ''}")
        raise typer.Exit(1)
