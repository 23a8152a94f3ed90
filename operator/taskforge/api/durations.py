"""Go-style durations ("90s", "5m", "1h30m"), the format Kubernetes users already write."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration string; raises ValueError naming the bad text."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(
            f"invalid duration {text!r}: use a number with ms, s, m or h, like 30s or 1h30m"
        )
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """The shortest readable form, for status messages and the CLI."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if secs or not out:
        out += f"{secs}s"
    return out


def parse_timestamp(value: Any) -> datetime | None:
    """A Kubernetes RFC 3339 timestamp ("2026-01-01T12:00:00Z"); None when unset."""
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
