"""`taskforge dlq`: dead-letter records of a namespace - list, show, replay, purge.

Through the Taskforge web API (taskforge.web), which authorizes each call by the caller's
own RBAC in that namespace (list workflowruns to read, create to replay, delete to purge)
and reads Redis itself: users need no Redis URL or password, and see only the namespaces
they may see. The server is reached through the API server's service proxy, or directly
with --server (a local `taskforge ui`); see cli/webapi.py.

ADMIN PATH: `--redis-url` bypasses the API and RBAC and talks to Redis directly, like the
operator (REDIS_URL and TASKFORGE_REDIS_* do NOT select it: it must be asked for by name).
It is for the installation's administrators (and -A, every namespace at once).

`replay` starts a fresh run of the record's workflow with the record's params (trigger
`replay`) in the record's namespace, then notes the new run on the record.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from taskforge.cli.errors import CliError
from taskforge.cli.options import ContextOpt, KubeconfigOpt, NamespaceOpt
from taskforge.cli.show import DataOutput
from taskforge.cli.webapi import (
    DEFAULT_SERVICE,
    ServerOpt,
    ServiceOpt,
    TokenOpt,
    WebApi,
    kube_config,
)

if TYPE_CHECKING:  # the admin path's modules load only when it is taken
    from taskforge.adapters.deadletter import DeadLetterEntry
    from taskforge.adapters.redis_client import RedisConnection

T = TypeVar("T")
_ADMIN = "Admin: direct Redis (bypasses the API and RBAC)"

app = typer.Typer(help="The dead-letter stream: steps that failed for good, per namespace.",
                  no_args_is_help=True, rich_markup_mode=None)

RedisUrlOpt = Annotated[
    str | None,
    typer.Option("--redis-url", show_default=False, rich_help_panel=_ADMIN,
                 help="ADMIN: read and write Redis directly instead of the API (needs the"
                 " Redis credentials; no RBAC)."),
]
PrefixOpt = Annotated[
    str | None,
    typer.Option("--redis-prefix", envvar="TASKFORGE_REDIS_PREFIX", show_default=False,
                 rich_help_panel=_ADMIN,
                 help="ADMIN: key prefix of the installation (default: taskforge:)."),
]
OutputOpt = Annotated[
    DataOutput | None,
    typer.Option("--output", "-o", help="Print json or yaml.", show_default=False),
]
IdArg = Annotated[str, typer.Argument(metavar="ID", help="Entry id, as listed.",
                                      show_default=False)]


def _view(e: DeadLetterEntry) -> dict[str, Any]:
    """The API's shape (taskforge.web.deadletters.entry_view), for the admin path too."""
    return {"id": e.stream_id, "record": e.id, "workflow": e.workflow or None,
            "namespace": e.namespace, "run": e.run, "step": e.step, "params": e.params,
            "error": e.error, "attempts": e.attempts, "failedAt": e.failed_at,
            "shippedAt": e.shipped_at, "replayedAs": e.replayed_as, "replayedAt": e.replayed_at}


def _redis(url: str, prefix: str | None,
           action: Callable[[RedisConnection], Awaitable[T]]) -> T:
    """ADMIN: run one async action against Redis; trouble becomes a one-line error."""
    import asyncio  # noqa: PLC0415 - ~80 ms: not for `dlq --help`

    from taskforge.adapters.deadletter import BadIdError  # noqa: PLC0415 - admin path only
    from taskforge.adapters.redis_client import (  # noqa: PLC0415
        RedisConnection,
        RedisSettings,
        RedisUnavailableError,
    )

    quiet = logging.getLogger("taskforge.adapters.redis_client")
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
    try:
        settings = RedisSettings.from_env()
        settings = replace(
            settings, url=url, prefix=settings.prefix if prefix is None else prefix,
            deadline=max(settings.deadline, 5.0),
            connect_timeout=max(settings.connect_timeout, 3.0),
            socket_timeout=max(settings.socket_timeout, 3.0),
            pool_timeout=max(settings.pool_timeout, 3.0),
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None

    async def go() -> T:
        conn = RedisConnection(settings)
        try:
            return await action(conn)
        finally:
            await conn.aclose()

    try:
        return asyncio.run(go())
    except RedisUnavailableError as exc:
        raise CliError(str(exc)) from None
    except BadIdError as exc:
        raise CliError(str(exc)) from None


def _api(ctx: typer.Context, namespace: str | None, context: str | None, kubeconfig: Any, *,
         server: str | None, service: str, token: str | None) -> WebApi:
    del namespace  # the path names it
    config = None if (server and token) else kube_config(ctx, context, kubeconfig)
    return WebApi.connect(config, server, service, token)


def _ago(timestamp: str, now: datetime) -> str:
    from taskforge.cli.render import human, parse_time  # noqa: PLC0415

    when = parse_time(timestamp)
    return f"{human((now - when).total_seconds())} ago" if when else "-"


@app.command("list")
def list_(
    ctx: typer.Context,
    *,
    count: Annotated[int, typer.Option("--count", min=1, max=500, help="Newest N entries.")]
    = 50,
    before: Annotated[
        str | None,
        typer.Option("--before", help="Page back: entries older than this id.",
                     show_default=False),
    ] = None,
    workflow: Annotated[
        str | None,
        typer.Option("--workflow", "-w", help="Only this workflow's entries.", show_default=False),
    ] = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A",
                           help="ADMIN (with --redis-url): entries of every namespace.")
    ] = False,
    output: OutputOpt = None,
    server: ServerOpt = None,
    service: ServiceOpt = DEFAULT_SERVICE,
    token: TokenOpt = None,
    redis_url: RedisUrlOpt = None,
    redis_prefix: PrefixOpt = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """List dead-letter entries of the namespace (-n, as kubectl chooses it), newest first."""
    from rich.table import Table  # noqa: PLC0415

    from taskforge.cli.client import chosen_namespace  # noqa: PLC0415
    from taskforge.cli.render import compact, console, emit  # noqa: PLC0415

    chosen = chosen_namespace(ctx, namespace, context, kubeconfig)
    if redis_url:
        from taskforge.adapters.deadletter import DeadLetterStream  # noqa: PLC0415

        async def read(conn: RedisConnection) -> list[dict[str, Any]]:
            spaces = (sorted(str(n) for n in await conn.client.smembers(conn.key("dlq:namespaces")))
                      if all_namespaces else [chosen])
            found: list[dict[str, Any]] = []
            for ns in spaces:
                found += [_view(e) for e in
                          await DeadLetterStream(conn, ns).list(count=count, before=before)]
            return found
        entries = _redis(redis_url, redis_prefix, read)
    else:
        if all_namespaces:
            raise CliError("-A needs the admin path (--redis-url): the API serves one"
                           " namespace at a time, as RBAC allows")
        api = _api(ctx, namespace, context, kubeconfig, server=server, service=service,
                   token=token)
        params = {"limit": str(count), **({"before": before} if before else {})}
        entries = api.call("GET", f"/api/v1/namespaces/{chosen}/deadletters",
                           params=params)["items"]
    if workflow:
        entries = [e for e in entries if e["workflow"] == workflow]
    if output is not None:
        emit(entries, output.value)
        return
    if not entries:
        print("No dead-letter entries.")
        return
    now = datetime.now(UTC)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("ID", "WORKFLOW", "RUN", "STEP", "ATTEMPTS", "FAILED", "ERROR", "REPLAYED AS"):
        table.add_column(col, no_wrap=col != "ERROR")
    for e in entries:
        table.add_row(
            e["id"], e["workflow"] or "(inline)", f"{e['namespace']}/{e['run']}", e["step"],
            str(e["attempts"]), _ago(e["failedAt"], now), compact(e["error"], 60),
            e["replayedAs"] or "-",
        )
    console().print(table)


def _admin_entry(url: str, prefix: str | None, ns: str, stream_id: str) -> dict[str, Any]:
    from taskforge.adapters.deadletter import DeadLetterStream  # noqa: PLC0415
    entry = _redis(url, prefix, lambda c: DeadLetterStream(c, ns).show(stream_id))
    if entry is None:
        raise CliError(f"no dead-letter entry {stream_id!r} in namespace {ns!r}")
    return _view(entry)


@app.command("show")
def show(
    ctx: typer.Context,
    stream_id: IdArg,
    *,
    output: OutputOpt = None,
    server: ServerOpt = None,
    service: ServiceOpt = DEFAULT_SERVICE,
    token: TokenOpt = None,
    redis_url: RedisUrlOpt = None,
    redis_prefix: PrefixOpt = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Show one dead-letter entry in full."""
    from rich.table import Table  # noqa: PLC0415

    from taskforge.cli.client import chosen_namespace  # noqa: PLC0415
    from taskforge.cli.render import compact, console, emit  # noqa: PLC0415

    ns = chosen_namespace(ctx, namespace, context, kubeconfig)
    if redis_url:
        entry = _admin_entry(redis_url, redis_prefix, ns, stream_id)
    else:
        api = _api(ctx, namespace, context, kubeconfig, server=server, service=service,
                   token=token)
        entry = api.call("GET", f"/api/v1/namespaces/{ns}/deadletters/{stream_id}")
    if output is not None:
        emit(entry, output.value)
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    now = datetime.now(UTC)
    for key, value in (
        ("ID", entry["id"]), ("Record", entry["record"]),
        ("Workflow", entry["workflow"] or "(inline)"),
        ("Run", f"{entry['namespace']}/{entry['run']}"), ("Step", entry["step"]),
        ("Attempts", str(entry["attempts"])),
        ("Failed", f"{entry['failedAt']}  ({_ago(entry['failedAt'], now)})"),
        ("Shipped", entry["shippedAt"]), ("Params", compact(entry["params"], 400)),
        ("Error", entry["error"]),
        ("Replayed as", f"{entry['replayedAs']} at {entry['replayedAt']}"
         if entry["replayedAs"] else "-"),
    ):
        grid.add_row(key, value)
    console().print(grid)


def _admin_replay(ctx: typer.Context, url: str, prefix: str | None, ns: str, stream_id: str,
                  *, context: str | None, kubeconfig: Any) -> str:
    """ADMIN: the replay done here, with the kubeconfig's rights on the cluster."""
    from taskforge.adapters.deadletter import DeadLetterStream  # noqa: PLC0415
    from taskforge.cli.client import RUNS, WORKFLOWS, connect  # noqa: PLC0415
    from taskforge.cli.runs import run_manifest  # noqa: PLC0415
    from taskforge.engine.naming import label_value  # noqa: PLC0415
    from taskforge.engine.rerun import LABEL_REPLAY_OF  # noqa: PLC0415

    entry = _admin_entry(url, prefix, ns, stream_id)
    cluster = connect(ctx, ns, context, kubeconfig)
    source: dict[str, Any]
    if entry["workflow"]:
        cluster.get(WORKFLOWS, entry["workflow"])  # a clear error if it is gone
        source = {"workflowRef": {"name": entry["workflow"]}}
    else:
        try:
            inline = (cluster.get(RUNS, entry["run"]).get("spec") or {}).get("workflowSpec")
        except CliError:
            inline = None
        if not inline:
            raise CliError(f"entry {stream_id} has an inline workflow and run {entry['run']!r}"
                           " (which held it) is gone: nothing to replay")
        source = {"workflowSpec": inline}
    manifest = run_manifest(
        workflow=entry["workflow"] or entry["run"], name=None, source=source,
        params=entry["params"] if isinstance(entry["params"], dict) else None,
        trigger="replay",
        labels={LABEL_REPLAY_OF: label_value(entry["run"])} if entry["run"] else None,
    )
    name = str(cluster.create(RUNS, manifest)["metadata"]["name"])
    noted = _redis(url, prefix, lambda c: DeadLetterStream(c, ns).mark_replayed(stream_id, name))
    if not noted:
        print(f"warning: entry {stream_id} vanished meanwhile; not marked", file=sys.stderr)
    return name


@app.command("replay")
def replay(
    ctx: typer.Context,
    stream_id: IdArg,
    *,
    watch: Annotated[bool, typer.Option("--watch", help="Follow the new run until it ends.")]
    = False,
    server: ServerOpt = None,
    service: ServiceOpt = DEFAULT_SERVICE,
    token: TokenOpt = None,
    redis_url: RedisUrlOpt = None,
    redis_prefix: PrefixOpt = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Start a new run of the entry's workflow with its params, in its namespace."""
    from taskforge.cli.client import chosen_namespace, connect  # noqa: PLC0415

    ns = chosen_namespace(ctx, namespace, context, kubeconfig)
    if redis_url:
        name = _admin_replay(ctx, redis_url, redis_prefix, ns, stream_id, context=context,
                             kubeconfig=kubeconfig)
    else:
        api = _api(ctx, namespace, context, kubeconfig, server=server, service=service,
                   token=token)
        answer = api.call("POST", f"/api/v1/namespaces/{ns}/deadletters/{stream_id}/replay")
        name = str(answer["run"]["name"])
    print(f"workflowrun.taskforge.io/{name} created in {ns} (replay of {stream_id})")
    if watch:
        from taskforge.cli.watching import exit_code, follow  # noqa: PLC0415

        raise typer.Exit(exit_code(follow(connect(ctx, ns, context, kubeconfig), name)))


@app.command("purge")
def purge(
    ctx: typer.Context,
    stream_id: Annotated[str | None, typer.Argument(metavar="[ID]", help="One entry to delete.",
                                                    show_default=False)] = None,
    *,
    all_entries: Annotated[bool, typer.Option("--all", help="Delete every entry of the"
                                              " namespace.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (with --all).")] = False,
    server: ServerOpt = None,
    service: ServiceOpt = DEFAULT_SERVICE,
    token: TokenOpt = None,
    redis_url: RedisUrlOpt = None,
    redis_prefix: PrefixOpt = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Delete one entry, or all of the namespace's with --all."""
    if (stream_id is None) == (not all_entries):
        raise CliError("give an entry ID or --all (not both)")
    from taskforge.cli.client import chosen_namespace  # noqa: PLC0415

    ns = chosen_namespace(ctx, namespace, context, kubeconfig)
    if all_entries and not yes:
        if not sys.stdin.isatty():
            raise CliError("purge --all deletes every entry of the namespace: add --yes to"
                           " confirm")
        typer.confirm(f"Delete every dead-letter entry of namespace {ns}?", abort=True)
    path = f"/api/v1/namespaces/{ns}/deadletters"
    if redis_url:
        from taskforge.adapters.deadletter import DeadLetterStream  # noqa: PLC0415
    if stream_id is not None:
        if redis_url:
            removed = _redis(redis_url, redis_prefix,
                             lambda c: DeadLetterStream(c, ns).purge(stream_id))
            if not removed:
                raise CliError(f"no dead-letter entry {stream_id!r} in namespace {ns!r}")
        else:
            _api(ctx, namespace, context, kubeconfig, server=server, service=service,
                   token=token).call(
                "DELETE", f"{path}/{stream_id}")
        print(f"purged {stream_id}")
        return
    if redis_url:
        removed = _redis(redis_url, redis_prefix, lambda c: DeadLetterStream(c, ns).purge_all())
    else:
        removed = int(_api(ctx, namespace, context, kubeconfig, server=server, service=service,
                   token=token).call(
            "DELETE", path, params={"all": "true"})["purged"])
    print(f"purged {removed} entr{'y' if removed == 1 else 'ies'}")
