"""How one run looks in `taskforge get` and `taskforge watch`: a header (workflow, phase,
progress, trigger, params, conditions, dead letter), then its steps as a tree in DAG order,
each with its attempts, forEach items, outputs and waits.

Apart from render.py (formats, times, tables of many runs or workflows) because this is the
one view of a single run, and the largest: it reads nearly every field of a run's status.
Like render.py it works on the apiserver's plain dicts and takes `now` as a parameter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from taskforge.cli.render import (
    PHASE_ICON,
    PHASE_STYLE,
    compact,
    human,
    is_terminal,
    parse_time,
    phase_text,
    run_workflow,
    span,
    summary,
)


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
