"""`taskforge list`: workflows or runs, with kubectl's habits.

`-o json|yaml|wide|name`, `--no-headers`, `-l/--selector` (labels, on the server),
`--field-selector` (the CRDs' selectableFields, on the server: `spec.workflowRef.name` for
runs), `--phase` (runs; on the client, as status fields are not selectable), `-w/--watch`
(print the list, then a line per change until interrupted), and the kinds by their CRD
names or short names (`tfw`, `tfr`). `--workflow` names the workflow of the runs (a field
selector, so runs made by kubectl or GitOps are found too); it gave up `-w` to `--watch`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from taskforge import GROUP
from taskforge.cli.archive import ArchiveUrlOpt
from taskforge.cli.errors import CliError
from taskforge.cli.options import RUNS, WORKFLOWS, ContextOpt, KubeconfigOpt, NamespaceOpt
from taskforge.cli.webapi import DEFAULT_SERVICE, ServerOpt, ServiceOpt, TokenOpt

if TYPE_CHECKING:  # `list --help` must not load rich or the client: imported in bodies
    from rich.table import Table

    from taskforge.cli.client import Cluster

WORKFLOW_REF_FIELD = "spec.workflowRef.name"
# The CRDs' names and short names (api/crdgen.py), as kubectl accepts them; wf/wfr are the
# CLI's older aliases, kept so scripts that used them go on working.
KINDS = {
    "runs": RUNS, "run": RUNS, "workflowruns": RUNS, "workflowrun": RUNS,
    "tfr": RUNS, "tfrun": RUNS, "wfr": RUNS,
    "workflows": WORKFLOWS, "workflow": WORKFLOWS, "tfw": WORKFLOWS, "tfwf": WORKFLOWS,
    "wf": WORKFLOWS,
}
_SINGULAR = {RUNS: "workflowrun", WORKFLOWS: "workflow"}


class ListOutput(StrEnum):
    json = "json"
    yaml = "yaml"
    wide = "wide"
    name = "name"


def _created(obj: dict[str, Any]) -> datetime:
    from taskforge.cli.render import parse_time  # noqa: PLC0415

    return parse_time(obj.get("metadata", {}).get("creationTimestamp")) or datetime.min.replace(
        tzinfo=UTC
    )


def _last_runs(
    workflows: list[dict[str, Any]], runs: list[dict[str, Any]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Each workflow's newest run, as the operator records it (`status.lastRun`), whoever
    created the run; the run's own object when it still exists, else just its name."""
    by_name = {(r["metadata"].get("namespace", ""), r["metadata"]["name"]): r for r in runs}
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for wf in workflows:
        namespace = wf["metadata"].get("namespace", "")
        name = (wf.get("status") or {}).get("lastRun")
        if name:
            last[(namespace, wf["metadata"]["name"])] = by_name.get(
                (namespace, name), {"metadata": {"name": name, "namespace": namespace}})
    return last


def _wide_columns(plural: str, objs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The extra columns of `-o wide`: what started a run and its params; a workflow's
    params and webhook."""
    from taskforge.cli.render import summary  # noqa: PLC0415

    if plural == RUNS:
        return ["TRIGGER", "PARAMS"], [
            [((o.get("spec") or {}).get("trigger") or {}).get("type", "manual"),
             summary((o.get("spec") or {}).get("params"), 60) or "-"] for o in objs]
    rows = []
    for o in objs:
        spec = o.get("spec") or {}
        params = ",".join(p.get("name", "?") for p in spec.get("params") or []) or "-"
        hook = "yes" if (spec.get("triggers") or {}).get("webhook") else "-"
        rows.append([params, hook])
    return ["PARAMS", "WEBHOOK"], rows


def _widen(table: Table, names: list[str], rows: list[list[str]]) -> Table:
    """The same table with more columns on the right (rich adds rows, not columns)."""
    from rich.table import Table  # noqa: PLC0415

    wide = Table(box=None, pad_edge=False, header_style="bold")
    columns = [(str(c.header), list(c.cells)) for c in table.columns]
    columns += [(name, [r[i] for r in rows]) for i, name in enumerate(names)]
    for name, _ in columns:
        wide.add_column(name, no_wrap=True)
    for i in range(len(rows)):
        wide.add_row(*(cells[i] for _, cells in columns))
    return wide


class _Printer:
    """Prints a batch of objects in the chosen form; `header` only for the first batch."""

    def __init__(self, cluster: Cluster, plural: str, output: ListOutput | None,
                 no_headers: bool, all_namespaces: bool) -> None:
        self.cluster, self.plural, self.output = cluster, plural, output
        self.headers, self.all_namespaces = not no_headers, all_namespaces

    def batch(self, objs: list[dict[str, Any]], *, header: bool) -> None:
        from taskforge.cli.render import as_list, console, emit, runs_table, workflows_table  # noqa: PLC0415

        if self.output is ListOutput.name:
            for o in objs:
                print(f"{_SINGULAR[self.plural]}.{GROUP}/{o['metadata']['name']}")
            return
        if self.output in (ListOutput.json, ListOutput.yaml):
            assert self.output is not None
            if header:  # the first batch is the list, as kubectl prints it
                emit(as_list(objs), self.output.value)
            else:
                for o in objs:
                    emit(o, self.output.value)
            return
        now = datetime.now(UTC)
        if self.plural == RUNS:
            table = runs_table(objs, now, namespaces=self.all_namespaces)
        else:
            runs = self.cluster.list_objects(RUNS, all_namespaces=self.all_namespaces)
            table = workflows_table(objs, _last_runs(objs, runs), now,
                                    namespaces=self.all_namespaces)
        if self.output is ListOutput.wide:
            table = _widen(table, *_wide_columns(self.plural, objs))
        table.show_header = header and self.headers
        console().print(table)

    def flush(self) -> None:
        """Each change reaches a pipe (`taskforge list -w | grep ...`) as it happens."""
        sys.stdout.flush()


def _filter(objs: Iterable[dict[str, Any]], phases: list[str], workflow: str | None,
            plural: str) -> list[dict[str, Any]]:
    wanted = {p.lower() for p in phases}
    out = []
    for o in objs:
        if wanted and ((o.get("status") or {}).get("phase") or "Pending").lower() not in wanted:
            continue
        if plural == WORKFLOWS and workflow and o["metadata"]["name"] != workflow:
            continue
        out.append(o)
    return out


def list_(
    ctx: typer.Context,
    *,
    kind: Annotated[
        str,
        typer.Argument(metavar="[workflows|runs]",
                       help="What to list: workflows (tfw) or runs (tfr; the default).",
                       show_default=False),
    ] = "runs",
    workflow: Annotated[
        str | None,
        typer.Option("--workflow", help="Only runs of this workflow (or only this workflow).",
                     show_default=False),
    ] = None,
    selector: Annotated[
        str | None,
        typer.Option("--selector", "-l", help="Label selector, e.g. team=data,tier!=test.",
                     show_default=False),
    ] = None,
    field_selector: Annotated[
        str | None,
        typer.Option("--field-selector",
                     help="Field selector: metadata.name, metadata.namespace, and for runs "
                          "spec.workflowRef.name.", show_default=False),
    ] = None,
    phase: Annotated[
        list[str] | None,
        typer.Option("--phase", help="Only runs in this phase (repeatable), e.g. Failed.",
                     show_default=False),
    ] = None,
    output: Annotated[
        ListOutput | None,
        typer.Option("--output", "-o", help="json, yaml, name, or wide (more columns).",
                     show_default=False),
    ] = None,
    no_headers: Annotated[
        bool, typer.Option("--no-headers", help="Print the table without its header.")
    ] = False,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="After the list, print each change.")
    ] = False,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="List across all namespaces.")
    ] = False,
    archived: Annotated[
        bool, typer.Option("--archived", help="Runs from the run archive, also those deleted"
                           " from the cluster (through the web API, as your RBAC allows;"
                           " -A needs the admin --archive-url).")
    ] = False,
    server: ServerOpt = None,
    service: ServiceOpt = DEFAULT_SERVICE,
    token: TokenOpt = None,
    archive_url: ArchiveUrlOpt = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """List workflows (steps, schedule, last run, validity) or runs (phase, progress, age)."""
    plural = KINDS.get(kind.lower())
    if plural is None:
        raise CliError(f"cannot list {kind!r}: choose workflows (tfw) or runs (tfr)")
    if phase and plural != RUNS:
        raise CliError("--phase applies to runs")
    fields = [f for f in (field_selector,) if f]
    if workflow and plural == RUNS:
        # A field selector (the CRD's selectableFields), not a label: runs made with kubectl
        # or by GitOps carry no label, only their spec.
        fields.append(f"{WORKFLOW_REF_FIELD}={workflow}")
    from taskforge.cli.client import connect  # noqa: PLC0415

    cluster = connect(ctx, namespace, context, kubeconfig)
    if archived:
        if plural != RUNS or watch:
            raise CliError("--archived lists runs, without --watch")
        if selector or field_selector:
            raise CliError("--archived filters by --workflow and --phase, not by selectors")
        from taskforge.cli.archive import list_archived, source  # noqa: PLC0415

        src = source(ctx, context, kubeconfig, server=server, service=service, token=token,
                     archive_url=archive_url)
        list_archived(src, None if all_namespaces else cluster.namespace, workflow,
                      [p.capitalize() for p in phase or []],
                      output.value if output else None, no_headers=no_headers)
        return
    printer = _Printer(cluster, plural, output, no_headers, all_namespaces)
    query: dict[str, Any] = {"all_namespaces": all_namespaces, "label_selector": selector,
                             "field_selector": ",".join(fields) or None}
    if watch:
        _watch(cluster, plural, printer, query, phases=phase or [], workflow=workflow)
        return
    objs = _filter(cluster.list_objects(plural, **query), phase or [], workflow, plural)
    objs.sort(key=_created if plural == RUNS else lambda o: (
        o["metadata"].get("namespace", ""), o["metadata"]["name"]))
    if not objs and output not in (ListOutput.json, ListOutput.yaml):
        where = "any namespace" if all_namespaces else f"namespace {cluster.namespace}"
        print(f"No {'runs' if plural == RUNS else 'workflows'} found in {where}.",
              file=sys.stderr if output is ListOutput.name else sys.stdout)
        return
    printer.batch(objs, header=True)


def _watch(cluster: Cluster, plural: str, printer: _Printer, query: dict[str, Any], *,
           phases: list[str], workflow: str | None) -> None:
    """The list, then one line per change; Ctrl-C ends it (exit 0, as kubectl -w)."""
    listed, first = False, list[dict[str, Any]]()
    try:
        for event, obj in cluster.watch_list(plural, **query):
            if not listed:
                if event == "LISTED":
                    printer.batch(_filter(sorted(first, key=_created), phases, workflow, plural),
                                  header=True)
                    printer.flush()
                    listed = True
                else:
                    first.append(obj)
                continue
            rows = _filter([obj], phases, workflow, plural)
            if rows:
                printer.batch(rows, header=False)
                printer.flush()
    except KeyboardInterrupt:
        return
