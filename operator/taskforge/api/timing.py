"""Fields that say when and in what order runs start: delayed starts and priorities.

In a module of their own so the Workflow and the WorkflowRun share one definition (range,
description, CEL rule) and the engine, the operator and the CLI read the same bounds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field, PlainSerializer, StringConstraints

from taskforge.api.common import cel_rule, k8s_validations
from taskforge.api.durations import format_timestamp, parse_duration

PRIORITY_MIN = -1000
PRIORITY_MAX = 1000
"""The CRD's range. The chart can lower the top (TASKFORGE_MAX_PRIORITY): the operator clamps
every priority to it. The bounds also keep the Redis queue score exact (adapters/ratelimit.py)."""

MAX_START_AFTER = "8784h"
"""A delay of at most 366 days: beyond it, say spec.startAt. The bound keeps the start time
computable (a delay of 10^12 hours overflows any date type) and the CEL cost known."""
MAX_START_AFTER_SECONDS = 8784 * 3600
START_AFTER_PATTERN = r"^([0-9]{1,7}([.][0-9]+)?(ms|s|m|h))+$"
"""DURATION_PATTERN with at most 7 digits a part: in 32 characters that stays far below
CEL's largest duration, so the CRD's `duration(self)` never fails at run time."""


def _aware(when: datetime) -> datetime:
    """A time without offset means UTC: the API server's date-time format accepts
    `2026-01-01T12:00:00`, and a naive time must never meet an aware `now`."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _bounded_delay(text: str) -> str:
    if parse_duration(text) > MAX_START_AFTER_SECONDS:
        raise ValueError(f"startAfter {text!r} is longer than {MAX_START_AFTER}; use startAt")
    return text


StartAt = Annotated[
    datetime,
    AfterValidator(_aware),
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
]
StartAfter = Annotated[
    str,
    StringConstraints(max_length=32, pattern=START_AFTER_PATTERN),
    AfterValidator(_bounded_delay),
    Field(
        json_schema_extra=k8s_validations(cel_rule(
            # matches() first: the API server evaluates the rule even when the pattern
            # failed, and duration() of a malformed text is a run-time error.
            f"!self.matches('{START_AFTER_PATTERN}')"
            f" || duration(self) <= duration('{MAX_START_AFTER}')",
            f"startAfter must be at most {MAX_START_AFTER} (366 days); use startAt",
        )),
    ),
]
Priority = Annotated[
    int,
    Field(
        ge=PRIORITY_MIN,
        le=PRIORITY_MAX,
    ),
]
