"""`taskforge dlq`: the dead-letter stream in Redis - list, show, replay, purge.

A thin shell over `taskforge.adapters.deadletter.DeadLetterStream` (the operator's own
reader and writer of the stream), run with `asyncio.run` per command. Redis is found like
the operator finds it (REDIS_URL and the TASKFORGE_REDIS_* variables) or with
`--redis-url`; from a laptop that is usually a `kubectl port-forward`. The operator's
deadlines are tuned to fail a reconcile fast; a person at a terminal can wait a few
seconds, so they are raised here.

`replay` starts a fresh run of the record's workflow with the record's params (trigger
`replay`) in the record's namespace, then notes the new run on the record.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from taskforge.adapters.deadletter import DeadLetterEntry, DeadLetterStream
from taskforge.adapters.redis_client import RedisConnection, RedisSettings, RedisUnavailableError
from taskforge.cli.client import RUNS, WORKFLOWS, chosen_namespace, connect
from taskforge.cli.errors import CliError
from taskforge.cli.options import ContextOpt, KubeconfigOpt, NamespaceOpt
from taskforge.cli.render import compact, console, emit, human, parse_time
from taskforge.cli.runs import run_manifest
from taskforge.cli.show import DataOutput
from taskforge.cli.watching import exit_code, follow
from taskforge.engine.naming import label_value

T = TypeVar("T")
LABEL_REPLAY_OF = "taskforge.io/replay-of"

app = typer.Typer(help="The dead-letter stream: steps that failed for good.",
                  no_args_is_help=True, rich_markup_mode=None)

RedisUrlOpt = Annotated[
    str | None,
    typer.Option("--redis-url", envvar="REDIS_URL", show_default=False,
                 help="Redis URL (default: $REDIS_URL, else redis://127.0.0.1:6379/0)."),
]
PrefixOpt = Annotated[
    str | None,
    typer.Option("--redis-prefix", envvar="TASKFORGE_REDIS_PREFIX", show_default=False,
                 help="Key prefix of the installation (default: taskforge:)."),
]
OutputOpt = Annotated[
    DataOutput | None,
    typer.Option("--output", "-o", help="Print json or yaml.", show_default=False),
]


def _with_stream(
    url: str | None, prefix: str | None, action: Callable[[DeadLetterStream], Awaitable[T]]
) -> T:
    """Run one async action against the stream; Redis trouble becomes a one-line error."""
    # The connection logs outages for the operator's log; here the error line says it all.
    quiet = logging.getLogger("taskforge.adapters.redis_client")
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
    try:
        settings = RedisSettings.from_env()
        settings = replace(
            settings,
            url=url or settings.url,
            prefix=settings.prefix if prefix is None else prefix,
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
            return await action(DeadLetterStream(conn))
        finally:
            await conn.aclose()

    try:
        return asyncio.run(go())
    except RedisUnavailableError as exc:
        raise CliError(str(exc)) from None


def _ago(timestamp: str, now: datetime) -> str:
    when = parse_time(timestamp)
    return f"{human((now - when).total_seconds())} ago" if when else "-"


@app.command("list")
def list_(
    ctx: typer.Context,
    *,
    count: Annotated[int, typer.Option("--count", min=1, help="Newest N entries.")] = 50,
    before: Annotated[
        str | None,
        typer.Option("--before", help="Page back: entries older than this stream id.",
                     show_default=False),
    ] = None,
    workflow: Annotated[
        str | None,
        typer.Option("--workflow", "-w", help="Only this workflow's entries.", show_default=False),
    ] = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="Entries of every namespace.")
    ] = False,
    output: OutputOpt = None,
    redis_url: RedisUrlOpt = None,
    redis_prefix: PrefixOpt = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """List dead-letter entries of the namespace (-n, as kubectl chooses it), newest first."""
    entries = _with_stream(redis_url, redis_prefix, lambda s: s.list(count=count, before=before))
    if not all_namespaces:
        chosen = chosen_namespace(ctx, namespace, context, kubeconfig)
        entries = [e for e in entries if e.namespace == chosen]
    if workflow:
        entries = [e for e in entries if e.workflow == workflow]
    if output is not None:
        emit([e.to_dict() for e in entries], output.value)
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
            e.stream_id, e.workflow or "(inline)", f"{e.namespace}/{e.run}", e.step,
            str(e.attempts), _ago(e.failed_at, now), compact(e.error, 60), e.replayed_as or "-",
        )
    console().print(table)


def _entry(stream_id: str, url: str | None, prefix: str | None) -> DeadLetterEntry:
    entry = _with_stream(url, prefix, lambda s: s.show(stream_id))
    if entry is None:
        raise CliError(f"no dead-letter entry {stream_id!r}")
    return entry


@app.command("show")
def show(
    stream_id: Annotated[str, typer.Argument(metavar="ID", help="Stream id, as listed.",
                                             show_default=False)],
    *,
    output: OutputOpt = None,
    redis_url: RedisUrlOpt = None,
    redis_prefix: PrefixOpt = None,
) -> None:
    """Show one dead-letter entry in full."""
    entry = _entry(stream_id, redis_url, redis_prefix)
    if output is not None:
        emit(entry.to_dict(), output.value)
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    now = datetime.now(UTC)
    for key, value in (
        ("ID", entry.stream_id), ("Record", entry.id), ("Workflow", entry.workflow or "(inline)"),
        ("Run", f"{entry.namespace}/{entry.run}"), ("Step", entry.step),
        ("Attempts", str(entry.attempts)),
        ("Failed", f"{entry.failed_at}  ({_ago(entry.failed_at, now)})"),
        ("Shipped", entry.shipped_at), ("Params", compact(entry.params, 400)),
        ("Error", entry.error),
        ("Replayed as", f"{entry.replayed_as} at {entry.replayed_at}" if entry.replayed_as
         else "-"),
    ):
        grid.add_row(key, value)
    console().print(grid)


@app.command("replay")
def replay(
    ctx: typer.Context,
    stream_id: Annotated[str, typer.Argument(metavar="ID", help="Stream id, as listed.",
                                             show_default=False)],
    *,
    watch: Annotated[bool, typer.Option("--watch", help="Follow the new run until it ends.")]
    = False,
    redis_url: RedisUrlOpt = None,
    redis_prefix: PrefixOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Start a new run of the entry's workflow with its params, in its namespace."""
    entry = _entry(stream_id, redis_url, redis_prefix)
    cluster = connect(ctx, entry.namespace or None, context, kubeconfig)
    source: dict[str, Any]
    if entry.workflow:
        cluster.get(WORKFLOWS, entry.workflow)  # a clear error if it is gone
        source = {"workflowRef": {"name": entry.workflow}}
    else:
        try:
            inline = (cluster.get(RUNS, entry.run).get("spec") or {}).get("workflowSpec")
        except CliError:
            inline = None
        if not inline:
            raise CliError(f"entry {stream_id} has an inline workflow and run {entry.run!r}"
                           " (which held it) is gone: nothing to replay")
        source = {"workflowSpec": inline}
    manifest = run_manifest(
        workflow=entry.workflow or entry.run,
        name=None,
        source=source,
        params=entry.params if isinstance(entry.params, dict) else None,
        trigger="replay",
        labels={LABEL_REPLAY_OF: label_value(entry.run)} if entry.run else None,
    )
    created = cluster.create(RUNS, manifest)
    name = created["metadata"]["name"]
    noted = _with_stream(redis_url, redis_prefix, lambda s: s.mark_replayed(stream_id, name))
    print(f"workflowrun.taskforge.io/{name} created in {cluster.namespace}"
          f" (replay of {stream_id})")
    if not noted:
        print(f"warning: entry {stream_id} vanished meanwhile; not marked", file=sys.stderr)
    if watch:
        raise typer.Exit(exit_code(follow(cluster, name)))


@app.command("purge")
def purge(
    stream_id: Annotated[str | None, typer.Argument(metavar="[ID]", help="One entry to delete.",
                                                    show_default=False)] = None,
    *,
    all_entries: Annotated[bool, typer.Option("--all", help="Delete every entry.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (with --all).")] = False,
    redis_url: RedisUrlOpt = None,
    redis_prefix: PrefixOpt = None,
) -> None:
    """Delete one entry, or all of them with --all."""
    if (stream_id is None) == (not all_entries):
        raise CliError("give an entry ID or --all (not both)")
    if stream_id is not None:
        removed = _with_stream(redis_url, redis_prefix, lambda s: s.purge(stream_id))
        if not removed:
            raise CliError(f"no dead-letter entry {stream_id!r}")
        print(f"purged {stream_id}")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise CliError("purge --all deletes every entry: add --yes to confirm")
        typer.confirm("Delete every dead-letter entry?", abort=True)
    removed = _with_stream(redis_url, redis_prefix, lambda s: s.purge_all())
    print(f"purged {removed} entr{'y' if removed == 1 else 'ies'}")
