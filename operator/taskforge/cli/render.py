"""How runs and workflows look on a terminal: rich tables, -o json|yaml, and the pieces
(times, phases, short values) that run_view.py draws one run's tree with.

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
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

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
