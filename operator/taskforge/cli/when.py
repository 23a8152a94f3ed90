"""`taskforge run --at/--in/--priority`: when a run starts and how it queues.

Checked here with the same rules the CRD applies (api/timing.py), so a typo is refused
before anything is created, naming the option.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer
from pydantic import TypeAdapter, ValidationError

from taskforge.api.durations import format_timestamp
from taskforge.api.timing import PRIORITY_MAX, PRIORITY_MIN, StartAfter

_DELAY: TypeAdapter[str] = TypeAdapter(StartAfter)


def start_fields(at: str | None, delay: str | None, priority: int | None) -> dict[str, Any]:
    """The spec fields for --at (RFC 3339; a time without offset is this machine's local
    time), --in (a duration from creation, e.g. 10m) and --priority."""
    out: dict[str, Any] = {}
    if at is not None and delay is not None:
        raise typer.BadParameter("give --at or --in, not both", param_hint="--at/--in")
    if at is not None:
        try:
            when = datetime.fromisoformat(at.strip().replace("Z", "+00:00"))
        except ValueError:
            raise typer.BadParameter(
                f"{at!r} is not a time; use RFC 3339, e.g. 2026-12-01T09:00:00Z",
                param_hint="--at") from None
        if when.tzinfo is None:
            when = when.astimezone()  # local time, as a person typing it means
        out["startAt"] = format_timestamp(when.astimezone(UTC))
    if delay is not None:
        try:
            out["startAfter"] = _DELAY.validate_python(delay)
        except ValidationError as exc:
            why = exc.errors()[0]["msg"].removeprefix("Value error, ")
            raise typer.BadParameter(f"{delay!r}: {why} (e.g. 90s, 10m, 1h30m)",
                                     param_hint="--in") from None
    if priority is not None:
        if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
            raise typer.BadParameter(f"{priority} is outside {PRIORITY_MIN}..{PRIORITY_MAX}",
                                     param_hint="--priority")
        out["priority"] = priority
    return out


def start_note(fields: dict[str, Any]) -> str:
    """What `run` prints after "created" for a delayed run."""
    if "startAt" in fields:
        return f" (starts at {fields['startAt']})"
    if "startAfter" in fields:
        return f" (starts in {fields['startAfter']})"
    return ""
