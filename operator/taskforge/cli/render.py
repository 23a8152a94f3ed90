"""How runs and workflows look on a terminal: rich tables and trees, and -o json|yaml.

Rendering works on the plain dicts the apiserver returns, not on the pydantic models: a
CLI must still show a run whose status carries a field this version does not know (a newer
operator), where the strict models would refuse it. Every function takes `now`, so a live
view shows ticking durations and the tests get stable output.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

import yaml
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from taskforge.api.run import TERMINAL_RUN_PHASES

PHASE_STYLE = {
    "Succeeded": "green",
    "Failed": "red",
    "Cancelled": "magenta",
    "Running": "cyan",
    "Retrying": "yellow",
    "Waiting": "yellow",
    "Pending": "dim",
    "Skipped": "dim",
}
PHASE_ICON = {
    "Succeeded": "✓",
    "Failed": "✗",
    "Cancelled": "⊘",
    "Running": "▶",
    "Retrying": "↻",
    "Waiting": "⏸",
    "Pending": "·",
    "Skipped": "↷",
}
OUTPUT_FORMATS = ("json", "yaml")


def console() -> Console:
    """stdout; when piped, wide enough that tables are not wrapped at 80 columns."""
    out = Console()
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(width=200)
    return out


def _without_managed_fields(data: Any) -> Any:
    """Like kubectl, leave out metadata.managedFields: noise for people and scripts alike."""
    if isinstance(data, dict):
        if isinstance(data.get("metadata"), dict) and "managedFields" in data["metadata"]:
            meta = {k: v for k, v in data["metadata"].items() if k != "managedFields"}
            data = {**data, "metadata": meta}
        if data.get("kind") == "List" and isinstance(data.get("items"), list):
            data = {**data, "items": [_without_managed_fields(i) for i in data["items"]]}
    return data


def emit(data: Any, fmt: str) -> None:
    """Machine-readable output: exactly the data, no colours, no wrapping."""
    data = _without_managed_fields(data)
    if fmt == "json":
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    elif fmt == "yaml":
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    else:  # pragma: no cover - typer restricts the choices
        raise ValueError(fmt)


def as_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A kubectl-style List, so `-o json` of a listing feeds `kubectl apply -f -` and jq."""
    return {"apiVersion": "v1", "kind": "List", "items": items}


# --- time ---------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def human(seconds: float) -> str:
    """kubectl's compact style: 850ms, 42s, 3m12s, 2h5m, 4d3h."""
    seconds = max(seconds, 0)
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{int(seconds)}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


def span(started: Any, finished: Any, now: datetime) -> str:
    """Elapsed time of something that started (and maybe finished); '-' if it did not."""
    start = parse_time(started)
    if start is None:
        return "-"
    end = parse_time(finished) or now
    return human((end - start).total_seconds())


def age(obj: dict[str, Any], now: datetime) -> str:
    created = parse_time(obj.get("metadata", {}).get("creationTimestamp"))
    return human((now - created).total_seconds()) if created else "-"


# --- small pieces -------------------------------------------------------------------------


def phase_text(phase: str | None) -> Text:
    phase = phase or "Pending"
    return Text(phase, style=PHASE_STYLE.get(phase, ""))


def compact(value: Any, limit: int = 60) -> str:
    """A value as short JSON on one line, cut with '…' past `limit` characters."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary(mapping: dict[str, Any] | None, limit: int = 100, *, quote: bool = False) -> str:
    """`key=value key2=value2` on one line, for outputs and params (`quote`: strings as
    JSON, so the param "1.10" and the number 1.1 look different)."""
    if not mapping:
        return ""

    def show(value: Any) -> str:
        return compact(json.dumps(value) if quote and isinstance(value, str) else value, 40)

    text = " ".join(f"{k}={show(v)}" for k, v in mapping.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def run_workflow(run: dict[str, Any]) -> str:
    """The run's workflow name: the reference, the label, or '(inline)'."""
    ref = (run.get("spec") or {}).get("workflowRef") or {}
    labels = run.get("metadata", {}).get("labels") or {}
    return str(ref.get("name") or labels.get("taskforge.io/workflow") or "(inline)")


def is_terminal(run: dict[str, Any] | None) -> bool:
    return bool(run) and (run or {}).get("status", {}).get("phase") in TERMINAL_RUN_PHASES


# --- tables ---------------------------------------------------------------------------------


def runs_table(runs: list[dict[str, Any]], now: datetime, *, namespaces: bool) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    if namespaces:
        table.add_column("NAMESPACE")
    for col in ("NAME", "WORKFLOW", "PHASE", "PROGRESS", "DURATION", "AGE"):
        table.add_column(col, no_wrap=True)
    for run in runs:
        status = run.get("status") or {}
        row: list[RenderableType] = [run["metadata"]["namespace"]] if namespaces else []
        row += [
            run["metadata"]["name"],
            run_workflow(run),
            phase_text(status.get("phase")),
            status.get("progress") or "-",
            span(status.get("startedAt"), status.get("finishedAt"), now),
            age(run, now),
        ]
        table.add_row(*row)
    return table


def workflows_table(
    workflows: list[dict[str, Any]],
    last_runs: dict[tuple[str, str], dict[str, Any]],
    now: datetime,
    *,
    namespaces: bool,
) -> Table:
    """Workflows with step count, schedule, newest run (name, phase, age) and validity."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    if namespaces:
        table.add_column("NAMESPACE")
    for col in ("NAME", "STEPS", "SCHEDULE", "LAST RUN", "VALID", "AGE"):
        table.add_column(col, no_wrap=True)
    for wf in workflows:
        meta, spec = wf["metadata"], wf.get("spec") or {}
        steps = len(spec.get("steps") or []) + len(spec.get("finally") or [])
        schedule = (spec.get("triggers") or {}).get("schedule") or {}
        cron = schedule.get("cron") or "-"
        if schedule.get("suspend"):
            cron += " (suspended)"
        last = last_runs.get((meta.get("namespace", ""), meta["name"]))
        last_text = Text("-")
        if last is not None and not last["metadata"].get("creationTimestamp"):
            last_text = Text(f"{last['metadata']['name']} (deleted)")
        elif last is not None:
            last_text = Text(f"{last['metadata']['name']} ")
            last_text.append_text(phase_text((last.get("status") or {}).get("phase")))
            last_text.append(f" {age(last, now)} ago")
        valid = condition(wf, "Valid")
        valid_text = Text("-")
        if valid is not None:
            ok = valid.get("status")
            valid_text = Text(str(ok), style="green" if ok == "True" else "red")
            if ok == "False" and valid.get("reason"):
                valid_text.append(f" ({valid['reason']})")
        row: list[RenderableType] = [meta.get("namespace", "")] if namespaces else []
        row += [meta["name"], str(steps), cron, last_text, valid_text, age(wf, now)]
        table.add_row(*row)
    return table


# --- the run tree -------------------------------------------------------------------------


def _step_line(
    name: str, st: dict[str, Any], deps: list[str], now: datetime, width: int,
    *, wide: bool = False,
) -> Text:
    phase = st.get("phase") or "Pending"
    line = Text(f"{PHASE_ICON.get(phase, '?')} ", style=PHASE_STYLE.get(phase, ""))
    line.append(name.ljust(width), style="bold")
    line.append("  ")
    line.append_text(phase_text(phase))
    line.append(" " * (9 - len(phase)))
    attempts = int(st.get("attempts") or 0)
    if attempts:
        line.append(f"  {attempts} attempt{'s' if attempts != 1 else ''}")
    if st.get("startedAt"):
        line.append(f"  {span(st.get('startedAt'), st.get('finishedAt'), now)}")
    if st.get("exitCode") is not None:
        line.append(f"  exit {st['exitCode']}")
    if st.get("failure") and phase != "Succeeded":
        line.append(f"  {st['failure']}", style="red")
    if st.get("reused"):
        line.append("  (reused)", style="dim")
    if deps:
        line.append(f"  after {', '.join(deps)}", style="dim")
    if wide:  # -o wide: where to look next (the Job) and the exact times
        started, finished = parse_time(st.get("startedAt")), parse_time(st.get("finishedAt"))
        line.append(f"  job {st.get('jobName') or '-'}", style="dim")
        line.append(f"  started {_clock(started)}  finished {_clock(finished)}", style="dim")
    return line


def _clock(when: datetime | None) -> str:
    return f"{when:%H:%M:%S.%f}"[:-3] if when else "-"


def _step_details(st: dict[str, Any], now: datetime) -> list[Text]:
    details: list[Text] = []
    if isinstance(st.get("items"), dict):
        details.append(item_line(st["items"]))
    if st.get("childRun"):  # a workflow step: where to look next
        details.append(Text(f"child run {st['childRun']}", style="dim"))
    if st.get("outputs"):
        details.append(Text(f"outputs: {summary(st['outputs'])}", style="dim"))
    if st.get("message"):
        details.append(Text(compact(str(st["message"]), 160)))
    when = parse_time(st.get("nextAttemptAt"))
    if when is not None and st.get("phase") not in ("Succeeded", "Failed", "Cancelled"):
        wait = human(max((when - now).total_seconds(), 0))
        details.append(Text(f"next attempt at {when:%H:%M:%S} (in {wait})", style="yellow"))
    until = parse_time(st.get("waitUntil"))
    if until is not None and st.get("phase") in ("Pending", "Waiting"):
        details.append(Text(f"rate-limited until {until:%H:%M:%S}", style="yellow"))
    details.extend(attempt_lines(st, now))
    return details


def item_line(items: dict[str, Any]) -> Text:
    """A forEach step's items: 'items 7/10 ended: 6 succeeded, 1 failed, 3 running'."""
    total = int(items.get("total") or 0)
    counts = {k: int(items.get(k) or 0) for k in
              ("succeeded", "failed", "cancelled", "running", "retrying", "pending")}
    ended = counts["succeeded"] + counts["failed"] + counts["cancelled"]
    parts = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    line = Text(f"items {ended}/{total} ended" + (f": {parts}" if parts else ""))
    failures = [f"#{f.get('index')}: {compact(str(f.get('message') or 'failed'), 60)}"
                for f in (items.get("failures") or [])[:3] if isinstance(f, dict)]
    if failures:
        line.append(f"  failed {'; '.join(failures)}", style="red")
    return line


def attempt_lines(st: dict[str, Any], now: datetime) -> list[Text]:
    """One line per attempt of a retried step (status attemptHistory), oldest first:
    'attempt 2  12:00:01.301  199ms  exit 75  Failed: boom'."""
    history = st.get("attemptHistory") or []
    lines: list[Text] = []
    first = history[0].get("attempt", 1) if history else 1
    if first > 1:
        earlier = "1 earlier attempt" if first == 2 else f"{first - 1} earlier attempts"
        lines.append(Text(f"{earlier} not kept", style="dim"))
    for record in history:
        start = parse_time(record.get("startedAt"))
        line = Text(f"attempt {record.get('attempt', '?')}", style="dim")
        line.append(f"  {start:%H:%M:%S.%f}"[:-3] if start else "  -", style="dim")
        ended = record.get("finishedAt")
        line.append(f"  {span(record.get('startedAt'), ended, now)}" + ("" if ended
                    else " so far"), style="dim")
        if record.get("exitCode") is not None:
            line.append(f"  exit {record['exitCode']}", style="dim")
        reason = record.get("reason")
        if reason:
            line.append(f"  {reason}", style="green" if reason == "Succeeded" else "red")
        if record.get("message"):
            line.append(f": {compact(str(record['message']), 100)}", style="dim")
        lines.append(line)
    return lines


def _header(run: dict[str, Any], now: datetime) -> Table:
    meta, spec, status = run["metadata"], run.get("spec") or {}, run.get("status") or {}
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Run", f"{meta['name']}  (namespace {meta.get('namespace', '-')})")
    pinned = status.get("workflow") or {}
    wf = run_workflow(run)
    if pinned.get("generation"):
        wf += f"  (generation {pinned['generation']})"
    grid.add_row("Workflow", wf)
    phase = phase_text(status.get("phase"))
    if spec.get("cancel") and not is_terminal(run):
        phase.append("  (cancel requested)", style="magenta")
    if status.get("message"):
        phase.append(f"  {compact(str(status['message']), 160)}")
    grid.add_row("Phase", phase)
    progress = status.get("progress") or "-"
    if status.get("itemProgress"):
        progress += f"  (forEach items {status['itemProgress']})"
    grid.add_row("Progress", progress)
    if status.get("startedAt"):
        grid.add_row("Started", f"{status['startedAt']}  ({age_of(status['startedAt'], now)} ago)")
        grid.add_row("Duration", span(status.get("startedAt"), status.get("finishedAt"), now))
    trigger = (spec.get("trigger") or {}).get("type") or "manual"
    retry_of = (meta.get("labels") or {}).get("taskforge.io/retry-of")
    grid.add_row("Trigger", f"{trigger} of {retry_of}" if retry_of else trigger)
    params = status.get("params") or spec.get("params")
    if params:
        grid.add_row("Params", summary(params, 200, quote=True))
    for cond in status.get("conditions") or []:
        text = Text(f"{cond.get('type')}={cond.get('status')}")
        if cond.get("reason"):
            text.append(f"  {cond['reason']}", style="bold")
        if cond.get("message"):
            text.append(f"  {compact(str(cond['message']), 140)}")
        grid.add_row("Condition", text)
    dead = status.get("deadLetter")
    if dead:
        shipped = "shipped" if dead.get("shipped") else "not yet shipped"
        error = compact(dead.get("error", ""))
        where = f"{dead.get('id')}  step {dead.get('step')}  ({shipped})"
        grid.add_row("Dead letter", f"{where}: {error}")
    return grid


def age_of(timestamp: Any, now: datetime) -> str:
    when = parse_time(timestamp)
    return human((now - when).total_seconds()) if when else "-"


def run_view(
    run: dict[str, Any],
    order: list[str],
    finally_steps: list[str],
    deps: dict[str, list[str]],
    now: datetime,
    *,
    wide: bool = False,
    headers: bool = True,
) -> RenderableType:
    """Header, then the steps in DAG order with finally steps on a branch of their own.

    Steps the status has but the spec does not (spec unknown) are listed in status order,
    so nothing the operator reports is hidden. `wide` adds each step's Job and exact
    times; without `headers` only the step lines are printed (no run header, no titles),
    for grep and scripts, as kubectl's --no-headers leaves only the rows.
    """
    steps: dict[str, Any] = (run.get("status") or {}).get("steps") or {}
    main = [n for n in order if n not in finally_steps]
    main += [n for n in steps if n not in order and n not in finally_steps]
    tree = Tree(Text("Steps", style="bold"), guide_style="dim")
    width = max([len(n) for n in main] + [len(n) + 4 for n in finally_steps], default=0)

    def add(branch: Tree, name: str) -> None:
        st = steps.get(name) or {}
        indent = 4 if name in finally_steps else 0  # one tree level deeper, keep columns
        node = branch.add(_step_line(name, st, deps.get(name, []), now, width - indent,
                                     wide=wide))
        for detail in _step_details(st, now):
            node.add(detail)

    if not headers:
        return Group(*(_step_line(n, steps.get(n) or {}, deps.get(n, []), now, width, wide=wide)
                       for n in [*main, *finally_steps]))
    for name in main:
        add(tree, name)
    if finally_steps:
        fin = tree.add(Text("finally", style="bold"))
        for name in finally_steps:
            add(fin, name)
    return Group(_header(run, now), Text(""), tree)
