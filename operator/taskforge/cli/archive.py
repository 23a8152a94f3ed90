"""The CLI's reads of the run archive (issue 18; docs/archive.md).

`taskforge list runs --archived`, and `taskforge get RUN` / `taskforge logs RUN [STEP]` when
the run, its Jobs or its pods are gone from the cluster, read the archive and say so on
stderr ("from the run archive").

By default they go through the Taskforge web API (taskforge.web.archive), like `taskforge
dlq`: the server checks the caller's own RBAC in the namespace (list/get `workflowruns`,
and get `pods/log` for logs) and holds the database's URL itself, so users need no
PostgreSQL credentials and see only the namespaces they may see. The server is reached
through the API server's service proxy, or directly with --server (cli/webapi.py).

ADMIN PATH: `--archive-url` (or TASKFORGE_ARCHIVE_URL, the operator's own variable) reads
PostgreSQL directly: whoever holds that URL reads every namespace, and Kubernetes RBAC is
not consulted. It is for the installation's administrators (and `list --archived -A`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from taskforge.cli.errors import CliError
from taskforge.cli.webapi import ApiCallError, WebApi

if TYPE_CHECKING:
    from taskforge.adapters.archive_reader import ArchiveReader

ARCHIVE_ENV = "TASKFORGE_ARCHIVE_URL"
_ADMIN = "Admin: direct PostgreSQL (bypasses the API and RBAC)"
T = TypeVar("T")

ArchiveUrlOpt = Annotated[
    str | None,
    typer.Option("--archive-url", envvar=ARCHIVE_ENV, show_default=False,
                 rich_help_panel=_ADMIN,
                 help="ADMIN: read the run archive's PostgreSQL directly instead of through"
                 " the API (its URL holds the password; every namespace, no RBAC)."),
]
UidOpt = Annotated[
    str | None,
    typer.Option("--uid", show_default=False,
                 help="The archived run with this uid, when several runs had the name"
                 " (the newest otherwise)."),
]


class Found(Enum):
    SHOWN = "shown"
    ABSENT = "absent"  # not archived, or no archive configured


@dataclass
class ArchiveSource:
    """Where archived runs are read: the web API (`api`, connected on first use) or, on the
    admin path, PostgreSQL at `url`."""

    connect: Callable[[], WebApi] | None
    url: str | None = None
    explicit: bool = False  # --server or --token given
    _api: WebApi | None = field(default=None, repr=False)

    @property
    def admin(self) -> bool:
        return self.url is not None

    def api(self) -> WebApi:
        if self._api is None:
            assert self.connect is not None
            self._api = self.connect()
        return self._api

    def note(self, text: str) -> None:
        how = "read directly from PostgreSQL (admin)" if self.admin else "through the API"
        print(f"(from the run archive, {how}: {text})", file=sys.stderr)

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        return self.api().call("GET", path, params=params)

    def read(self, use: Callable[[ArchiveReader], Awaitable[T]]) -> T:
        """ADMIN: one async read against PostgreSQL; trouble becomes a one-line error."""
        assert self.url is not None
        url = self.url
        try:
            import asyncio  # noqa: PLC0415 - not for `--help`

            import psycopg  # noqa: PLC0415 - only this path needs the driver

            from taskforge.adapters.archive_reader import ArchiveReader  # noqa: PLC0415
        except ImportError:
            raise CliError("reading the run archive directly needs psycopg: pip install"
                           " 'taskforge[operator]'") from None

        async def run() -> T:
            async with ArchiveReader(url) as reader:
                return await use(reader)

        try:
            return asyncio.run(run())
        except psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CliError(f"the run archive cannot be read: {first}") from None


def source(ctx: typer.Context, context: str | None, kubeconfig: Any, *, server: str | None,
           service: str, token: str | None, archive_url: str | None) -> ArchiveSource:
    """The admin path when --archive-url (TASKFORGE_ARCHIVE_URL) is given, else the API."""
    if archive_url and archive_url.strip():
        return ArchiveSource(None, archive_url.strip())

    def connect() -> WebApi:
        from taskforge.cli.webapi import kube_config  # noqa: PLC0415

        config = None if (server and token) else kube_config(ctx, context, kubeconfig)
        return WebApi.connect(config, server, service, token)

    return ArchiveSource(connect, explicit=bool(server or token))


def _path(namespace: str, name: str = "", tail: str = "") -> str:
    base = f"/api/v1/namespaces/{namespace}/archive/runs"
    return base + (f"/{name}" if name else "") + tail


def fallback_error(original: CliError, exc: CliError, src: ArchiveSource) -> CliError:
    """The cluster's "not found", with why the archive did not answer instead: when the
    Taskforge server itself answered (403, 503), or the user named a server or the admin
    URL. Otherwise (no UI Service in this cluster, a user without a bearer token) the
    fallback stays quiet, and a mistyped name reads as it does without an archive;
    `list runs --archived` says why the API cannot be reached."""
    if not (src.admin or src.explicit or (isinstance(exc, ApiCallError) and exc.ours)):
        return original
    return CliError(f"{original} (the run archive was not read: {exc})")


def _absent(exc: ApiCallError) -> bool:
    """The server said: not archived (404), or it has no archive (501)."""
    return exc.ours and exc.status in (404, 501)


def _emit(data: Any, output: str | None) -> bool:
    if output == "json":
        print(json.dumps(data, indent=2, default=str))
        return True
    if output == "yaml":
        import yaml  # noqa: PLC0415

        print(yaml.safe_dump(data, sort_keys=False), end="")
        return True
    return False


def _table(rows: list[list[str]]) -> None:
    if not rows:
        return
    widths = [max(len(str(r[c])) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("   ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _list_api(src: ArchiveSource, namespace: str, workflow: str | None, phases: list[str],
              limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token: str | None = None
    while len(items) < limit:
        params = {"limit": str(min(500, limit - len(items)))}
        params |= {"workflow": workflow} if workflow else {}
        params |= {"phase": ",".join(phases)} if phases else {}
        params |= {"continue": token} if token else {}
        page = src.get(_path(namespace), params)
        items += page["items"]
        token = page.get("continue")
        if not token:
            break
    return items


def list_archived(src: ArchiveSource, namespace: str | None, workflow: str | None,
                  phases: list[str], output: str | None, *, no_headers: bool = False,
                  limit: int = 500) -> None:
    """`taskforge list runs --archived`: newest finished first."""
    if namespace is None and not src.admin:
        raise CliError("--archived -A needs the admin path (--archive-url): the API serves"
                       " one namespace at a time, as RBAC allows")
    if src.admin:
        items: list[dict[str, Any]] = src.read(lambda r: r.list_runs(
            [namespace] if namespace else None, workflow=workflow, phases=phases, limit=limit))
    else:
        assert namespace is not None
        items = _list_api(src, namespace, workflow, phases, limit)
    src.note(f"{len(items)} archived runs" + (f" in namespace {namespace}" if namespace else ""))
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


def _fetch_run(src: ArchiveSource, namespace: str, name: str,
               uid: str | None) -> dict[str, Any] | None:
    if src.admin:
        async def read(r: ArchiveReader) -> dict[str, Any] | None:
            run = await r.get_run(namespace, name, uid)
            if run is not None:
                run["sameName"] = await r.same_name(namespace, name)
            return run
        found: dict[str, Any] | None = src.read(read)
        return found
    try:
        got: dict[str, Any] = src.get(_path(namespace, name), {"uid": uid} if uid else None)
    except ApiCallError as exc:
        if _absent(exc):
            return None
        raise
    return got


def show_archived(src: ArchiveSource, namespace: str, name: str, output: str | None,
                  uid: str | None = None) -> Found:
    """`taskforge get RUN` for a run gone from the cluster."""
    run = _fetch_run(src, namespace, name, uid)
    if run is None:
        return Found.ABSENT
    src.note(f"run {namespace}/{name} is no longer in the cluster; archived {run['archivedAt']}")
    others = [r for r in run.get("sameName") or [] if r["uid"] != run["uid"]]
    if others:
        src.note(f"{len(others)} other archived run(s) named {name}, chosen with --uid: "
                 + ", ".join(f"{r['uid']} ({r['phase']}, finished {r['finishedAt']})"
                             for r in others[:5]))
    if _emit(run, output):
        return Found.SHOWN
    if output == "name":
        print(f"workflowrun.taskforge.io/{name}")
        return Found.SHOWN
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
    return Found.SHOWN


def _fetch_logs(src: ArchiveSource, namespace: str, name: str, step: str | None,
                attempt: int | None, *, uid: str | None) -> list[dict[str, Any]]:
    if src.admin:
        logs: list[dict[str, Any]] = src.read(
            lambda r: r.logs(namespace, name, step, attempt, uid=uid))
        return logs
    params = {k: str(v) for k, v in (("step", step), ("attempt", attempt), ("uid", uid))
              if v is not None}
    try:
        answer = src.get(_path(namespace, name, "/logs"), params)
    except ApiCallError as exc:
        if _absent(exc):
            return []
        raise
    items: list[dict[str, Any]] = answer["items"]
    return items


def logs_archived(src: ArchiveSource, namespace: str, name: str, step: str | None,
                  attempt: int | None, *, uid: str | None = None) -> Found:
    """`taskforge logs RUN [STEP]` from the archive."""
    logs = _fetch_logs(src, namespace, name, step, attempt, uid=uid)
    if not logs:
        return Found.ABSENT
    src.note(f"logs of run {namespace}/{name}, kept when each attempt ended (the last 1 MiB)")
    prefixed = step is None
    for entry in logs:
        tag = f"[{entry['step']}#{entry['attempt']}] " if prefixed else ""
        if entry.get("omitted"):
            print(f"{tag}(too much for one answer: taskforge logs {name} {entry['step']})",
                  file=sys.stderr)
            continue
        if entry.get("note"):
            print(f"{tag}({entry['note']})", file=sys.stderr)
        if entry.get("truncated"):
            print(f"{tag}(earlier output cut: the archive keeps the last 1 MiB)",
                  file=sys.stderr)
        for line in entry["text"].splitlines():
            print(f"{tag}{line}")
    return Found.SHOWN
