"""Log lines as text or JSON (`TASKFORGE_LOG_FORMAT`), with the run's fields on each line.

JSON lines come from python-json-logger (a maintained formatter for the stdlib `logging`
that kopf, aiohttp and our own modules already log through): one object a line with `time`,
`level`, `logger`, `message`, and `namespace`, `workflow`, `run`, `step`, `attempt` when the
line is about a run. The fields come from a context variable that the run's reconcile sets
(`run_fields`), so every line logged while it works (in this task, or in the threads it
starts with `asyncio.to_thread`, which copy the context) carries them without each call
passing them; `extra={"step": ..., "attempt": ...}` adds a step's.

Shared by the operator and the executor (it imports no operator layer), so both log the
same way.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any

RUN_FIELDS = ("namespace", "workflow", "run", "step", "attempt")
_fields: ContextVar[dict[str, Any] | None] = ContextVar("taskforge_log_fields", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s %(message)s"


class RunFields(logging.Filter):
    """Copies the context's run fields onto each record (as `extra=` would)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _fields.get()
        if fields:
            for key, value in fields.items():
                if value is not None and not hasattr(record, key):
                    setattr(record, key, value)
        return True


class run_fields:  # noqa: N801 - used as a context manager, like contextlib's
    """Lines logged inside carry these fields (None values are left out).

    A class rather than @contextmanager: it is entered once per reconcile, and a generator
    costs several times more."""

    __slots__ = ("_fields", "_token")

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def __enter__(self) -> None:
        self._token = _fields.set(self._fields)

    def __exit__(self, *_: object) -> None:
        _fields.reset(self._token)


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter  # noqa: PLC0415 - only when asked for

    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",  # ISO 8601, UTC
    )


def setup(fmt: str = "text", level: str | int = "INFO", stream: Any = None) -> None:
    """Configure the root logger: one handler on stderr, text or JSON."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RunFields())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
