"""The CLI's fallback to the run archive (issue 18; docs/archive.md).

`taskforge list runs --archived`, and `taskforge get RUN` / `taskforge logs RUN [STEP]` when
the run, its Jobs or its pods are gone from the cluster, read the archive and say so on
stderr ("from the run archive").

This is an ADMIN path: it reads PostgreSQL directly with the URL in TASKFORGE_ARCHIVE_URL
(the operator's own variable), so whoever holds that URL reads every namespace; Kubernetes
RBAC is not consulted. The HTTP API (issue 17) is the place for per-namespace authorization;
it has no archive endpoints yet, and `taskforge.adapters.archive_reader` is the seam it
would use (the same queries as here).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from taskforge.cli.errors import CliError

ARCHIVE_ENV = "TASKFORGE_ARCHIVE_URL"
T = TypeVar("T")


def archive_url() -> str | None:
    url = os.environ.get(ARCHIVE_ENV, "").strip()
    return url or None


def _note(text: str) -> None:
    print(f"(from the run archive: {text})", file=sys.stderr)


def _read(use: Callable[[Any], Awaitable[T]]) -> T:
    url = archive_url()
    if url is None:
        raise CliError(f"the run archive is not configured: set {ARCHIVE_ENV} to its"
                       " PostgreSQL URL (an admin path: it reads every namespace)")
    try:
        import psycopg  # noqa: PLC0415 - only this path needs the driver

        from taskforge.adapters.archive_reader import ArchiveReader  # noqa: PLC0415
    except ImportError:
        raise CliError("reading the run archive needs psycopg: pip install"
                       " 'taskforge[operator]'") from None

    async def run() -> T:
        async with ArchiveReader(url) as reader:
            return await use(reader)

    try:
        return asyncio.run(run())
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CliError(f"the run archive cannot be read: {first}") from None


def _emit(data: Any, output: str | None) -> bool:
    if output == "json":
        print(json.dumps(data, indent=2, default=str))
        return True
    if output == "yaml":
        import yaml  # noqa: PLC0415

        print(yaml.safe_dump(data, sort_keys=False), end="")
        return True
    return False


def list_archived(namespace: str | None, workflow: str | None, phases: list[str],
                  output: str | None, *, no_headers: bool = False, limit: int = 500) -> None:
    """`taskforge list runs --archived`: newest finished first."""
    items = _read(lambda r: r.list_runs([namespace] if namespace else None, workflow=workflow,
                                        phases=phases, limit=limit))
    _note(f"{len(items)} archived runs" + (f" in namespace {namespace}" if namespace else ""))
    if _emit({"items": items}, output):
        return
    if output == "name":
        for item in items:
            print(f"workflowrun.taskforge.io/{item['name']}")
        return
    rows = [["NAMESPACE"] * (namespace is None) + ["NAME", "WORKFLOW", "PHASE", "TRIGGER",
                                                   "STARTED", "FINISHED"]]
    rows = rows[no_headers:]
    for i in items:
        rows.append([i["namespace"]] * (namespace is None) + [
            i["name"], i.get("workflow") or "-", i["phase"], i.get("trigger") or "-",
            i.get("startedAt") or "-", i.get("finishedAt") or "-"])
    _table(rows)


def _table(rows: list[list[str]]) -> None:
    if not rows:
        return
    widths = [max(len(str(r[c])) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("   ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def show_archived(namespace: str, name: str, output: str | None) -> bool:
    """`taskforge get RUN` for a run gone from the cluster; False when not archived."""
    if archive_url() is None:
        return False
    run = _read(lambda r: r.get_run(namespace, name))
    if run is None:
        return False
    _note(f"run {namespace}/{name} is no longer in the cluster; archived {run['archivedAt']}")
    if _emit(run, output):
        return True
    if output == "name":
        print(f"workflowrun.taskforge.io/{name}")
        return True
    for label, key in (("Name", "name"), ("Namespace", "namespace"), ("UID", "uid"),
                       ("Workflow", "workflow"), ("Generation", "workflowGeneration"),
                       ("Phase", "phase"), ("Trigger", "trigger"), ("Creator", "creator"),
                       ("Started", "startedAt"), ("Finished", "finishedAt"),
                       ("Message", "message")):
        if run.get(key) not in (None, ""):
            print(f"{label + ':':<12}{run[key]}")
    if run.get("params"):
        print(f"{'Params:':<12}{json.dumps(run['params'], sort_keys=True)}")
    if run.get("outputs"):
        print(f"{'Outputs:':<12}{json.dumps(run['outputs'], sort_keys=True)}")
    rows = [["STEP", "ATTEMPT", "REASON", "EXIT", "STARTED", "FINISHED", "MESSAGE"]]
    for a in run["attempts"]:
        rows.append([a["step"], str(a["attempt"]), a.get("reason") or "-",
                     "-" if a.get("exitCode") is None else str(a["exitCode"]),
                     a.get("startedAt") or "-", a.get("finishedAt") or "-",
                     (a.get("message") or "").splitlines()[0][:80] if a.get("message") else ""])
    print()
    _table(rows)
    return True


def logs_archived(namespace: str, name: str, step: str | None, attempt: int | None) -> bool:
    """`taskforge logs RUN [STEP]` from the archive; False when it holds none."""
    if archive_url() is None:
        return False
    logs = _read(lambda r: r.logs(namespace, name, step, attempt))
    if not logs:
        return False
    _note(f"logs of run {namespace}/{name}, kept when each attempt ended (the last 1 MiB)")
    prefixed = step is None
    for entry in logs:
        tag = f"[{entry['step']}#{entry['attempt']}] " if prefixed else ""
        if entry.get("note"):
            print(f"{tag}({entry['note']})", file=sys.stderr)
        if entry.get("truncated"):
            print(f"{tag}(earlier output cut: the archive keeps the last 1 MiB)",
                  file=sys.stderr)
        for line in entry["text"].splitlines():
            print(f"{tag}{line}")
    return True
